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


def run_in_chunks(run: Callable[[np.ndarray], dict[str, np.ndarray]], batch: np.ndarray, max_batch: int | None) -> dict[str, np.ndarray]:
    """Run ``batch`` through ``run`` at most ``max_batch`` images at a time; outputs concatenated."""
    if max_batch is None or len(batch) <= max_batch:
        return run(batch)
    parts = [run(batch[i : i + max_batch]) for i in range(0, len(batch), max_batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
