"""Runtimes that execute an engine: one module per runtime, all behind ``Backend``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

BACKENDS = ("auto", "onnxruntime", "torch", "aoti", "tensorrt")  # what --backend takes


@runtime_checkable
class Backend(Protocol):
    """Runs a network on a batch and returns its raw, named outputs."""

    name: str
    input_hw: tuple[int, int]
    max_batch: int | None  # None: any batch size
    # The torch device this backend also takes tensors on (``infer_tensor``), e.g. "cuda:0";
    # None: numpy only. The GPU path (pipeline.paths) needs one, so nothing leaves the device.
    tensor_device: str | None
    captures_own_graphs: bool  # it replays its own CUDA graphs (TensorRT): the GPU path adds none

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """batch: (B, 3, H, W) float32 -> {output name: array with leading batch axis B}."""
        ...

    def infer_tensor(self, batch) -> dict:
        """(B, 3, H, W) float32 tensor on ``tensor_device`` -> {name: tensor on that device}.
        Only called when ``tensor_device`` is not None."""
        ...


def run_in_chunks(run: Callable, batch, max_batch: int | None, exact: bool = False) -> dict:
    """Run ``batch`` through ``run`` at most ``max_batch`` images at a time; outputs concatenated.

    batch: a numpy array or a torch tensor (outputs are then of the same kind). exact: the graph
    takes exactly ``max_batch`` images (a fixed batch axis): a short chunk is padded with zeros
    and the padding's outputs dropped.
    """
    if not isinstance(batch, np.ndarray):
        import torch

        cat, pad = torch.cat, (lambda c, n: c.new_zeros((n, *c.shape[1:])))
    else:
        cat, pad = np.concatenate, (lambda c, n: np.zeros((n, *c.shape[1:]), c.dtype))
    if max_batch is None or (len(batch) <= max_batch and not exact):
        return run(batch)
    parts = []
    for i in range(0, len(batch), max_batch):
        chunk = batch[i : i + max_batch]
        n = len(chunk)
        if exact and n < max_batch:
            chunk = cat([chunk, pad(chunk, max_batch - n)])
        parts.append({k: v[:n] for k, v in run(chunk).items()})
    if len(parts) == 1:
        return parts[0]
    return {k: cat([p[k] for p in parts]) for k in parts[0]}
