"""One fixed-shape engine per input shape, made on first use: AOTInductor and TensorRT engines
for inputs fitted to each stream's shape (``Fit.per_frame``).

A compiled engine is fastest at one input shape, and a stream keeps its shape: the first batch
of a new shape builds (or takes from the engine cache) that shape's engine, later batches of
that shape reuse it. Batches mix shapes only when sources differ; the paths make one call per
shape (``pipeline.paths.ShapeGroups``), so each call here has one shape.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.backends import Backend


class PerShapeBackend:
    """A Backend over engines made per input (height, width) by ``make``.

    name, max_batch, tensor_device and captures_own_graphs are those of the engines ``make``
    returns, given up front (nothing is built before the first call). input_hw: the largest
    input (the fit's bound).
    """

    def __init__(self, make: Callable[[tuple[int, int]], Backend], name: str, input_hw: tuple[int, int], max_batch: int | None,
                 tensor_device: str | None, captures_own_graphs: bool):
        self._make = make
        self.engines: dict[tuple[int, int], Backend] = {}
        self.name, self.input_hw, self.max_batch = name, input_hw, max_batch
        self.tensor_device, self.captures_own_graphs = tensor_device, captures_own_graphs

    def engine(self, input_hw: tuple[int, int]) -> Backend:
        """The engine for inputs of this (height, width), made on first use."""
        hw = (int(input_hw[0]), int(input_hw[1]))
        if hw not in self.engines:
            self.engines[hw] = self._make(hw)
        return self.engines[hw]

    def infer(self, batch):
        return self.engine(batch.shape[-2:]).infer(batch)

    def infer_tensor(self, batch) -> dict:
        return self.engine(tuple(batch.shape[-2:])).infer_tensor(batch)
