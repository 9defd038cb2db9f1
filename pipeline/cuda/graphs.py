"""CUDA graphs for fixed-shape engines: capture an engine call once per input shape, then
replay it (one launch instead of one per kernel). Anything that cannot be captured runs as
it is, with one warning line saying why.

TensorRT plans capture their own graphs (``pipeline.backends.tensorrt``); this wraps the
engines that are torch code: the torch module and AOTInductor packages.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

Outputs = dict[str, torch.Tensor]


class CudaGraphs:
    """``fn(batch) -> outputs`` replayed from CUDA graphs, one per batch shape (at most
    ``max_graphs``; other shapes, and every call off CUDA, run ``fn`` directly).

    A graph is captured on the second call at a shape (the first runs eagerly and lets lazy
    initialisation happen outside the graph). Outputs are copies: the graph's own output
    buffers are overwritten by the next replay.
    """

    def __init__(self, fn: Callable[[torch.Tensor], Outputs], device: torch.device | str, label: str, max_graphs: int = 8):
        self.fn, self.device, self.label, self.max_graphs = fn, torch.device(device), label, max_graphs
        self.graphs: dict[tuple, tuple[torch.Tensor, torch.cuda.CUDAGraph, Outputs]] = {}
        self.seen: set[tuple] = set()
        self.failed: dict[tuple, str] = {}

    @property
    def enabled(self) -> bool:
        return self.device.type == "cuda"

    def __call__(self, batch: torch.Tensor) -> Outputs:
        key = (tuple(batch.shape), batch.dtype)
        entry = self.graphs.get(key)
        if entry is None:
            if not self.enabled or key in self.failed or len(self.graphs) >= self.max_graphs or key not in self.seen:
                self.seen.add(key)
                return self.fn(batch)
            entry = self._capture(batch, key)
            if entry is None:
                return self.fn(batch)
        static_in, graph, static_out = entry
        static_in.copy_(batch)
        graph.replay()
        return {k: v.clone() for k, v in static_out.items()}

    def _capture(self, batch: torch.Tensor, key: tuple):
        try:
            static_in = batch.clone()
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self.fn(static_in)  # warm-up on a side stream, as capture requires
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other threads upload meanwhile
                static_out = self.fn(static_in)
        except Exception as exc:  # noqa: BLE001 - any capture failure means: run eagerly
            reason = f"{exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
            self.failed[key] = reason
            warnings.warn(f"{self.label}: CUDA graph capture failed at input {list(key[0])} ({reason}); running without a graph",
                          RuntimeWarning, stacklevel=2)
            return None
        self.graphs[key] = (static_in, graph, static_out)
        return self.graphs[key]
