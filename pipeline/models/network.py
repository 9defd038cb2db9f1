"""``Network``: what a model spec resolves to, before a backend runs it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.backends import Backend
from pipeline.types import EngineMeta


@dataclass
class Network:
    """A network ready for a backend: an ONNX graph, a torch module, or (checkpoints) both ways,
    with its engine metadata. ``pipeline.models.resolve`` makes one from a spec."""

    meta: EngineMeta
    label: str  # what to call it in messages and metadata
    onnx: Path | bytes | None = None
    module: object | None = None  # torch.nn.Module
    cpu_backend: Backend | None = None  # the ONNX Runtime session opened to read the metadata
    source: Path | None = None  # the file whose sha256 identifies the weights (checkpoint, ONNX, state_dict)
    engine: Path | None = None  # a built .pt2 / .engine (its sidecar checked; see pipeline.sidecar)

    def to_onnx(self) -> Path | bytes:
        if self.onnx is None:
            from pipeline.models.export import to_onnx

            self.onnx = to_onnx(self.module, self.meta, batch=self.meta.batch)
        return self.onnx
