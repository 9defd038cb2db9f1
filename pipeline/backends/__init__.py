"""Runtimes that execute an engine: one module per runtime, all behind ``Backend``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    """Runs a network on a batch and returns its raw, named outputs."""

    name: str
    input_hw: tuple[int, int]
    max_batch: int | None  # None: any batch size

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """batch: (B, 3, H, W) float32 -> {output name: array with leading batch axis B}."""
        ...

    def metadata(self) -> dict[str, str]:
        """Key/value metadata stored with the engine (e.g. ONNX metadata_props)."""
        ...


def run_in_chunks(run: Callable[[np.ndarray], dict[str, np.ndarray]], batch: np.ndarray, max_batch: int | None,
                  exact: bool = False) -> dict[str, np.ndarray]:
    """Run ``batch`` through ``run`` at most ``max_batch`` images at a time; outputs concatenated.

    exact: the graph takes exactly ``max_batch`` images (a fixed batch axis): a short chunk is
    padded with zeros and the padding's outputs dropped.
    """
    if max_batch is None or (len(batch) <= max_batch and not exact):
        return run(batch)
    parts = []
    for i in range(0, len(batch), max_batch):
        chunk = batch[i : i + max_batch]
        n = len(chunk)
        if exact and n < max_batch:
            chunk = np.concatenate([chunk, np.zeros((max_batch - n, *chunk.shape[1:]), chunk.dtype)])
        parts.append({k: v[:n] for k, v in run(chunk).items()})
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
