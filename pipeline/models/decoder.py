"""What every family's decoder shares: its settings and its contract (host, and device when it has one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.types import Detections, FitTransform


@dataclass(frozen=True)
class DecodeSettings:
    """conf: keep scores above this. iou: NMS overlap threshold. max_det: detections kept per
    image. classes: keep only these class ids (None: all). agnostic: NMS across classes.
    nms: also run NMS on NMS-free (end-to-end, RT-DETR) outputs, which are final without it."""

    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    classes: tuple[int, ...] | None = None
    agnostic: bool = False
    nms: bool = False


class DeviceDecoder(Protocol):
    """outputs (tensors on the device) + transforms -> [(Detections on the host, device masks or None)]."""

    def __call__(self, outputs: dict, transforms: list[FitTransform]) -> list[tuple[Detections, object]]: ...


class Decoder(Protocol):
    """A family's decoder: raw outputs (numpy, batch axis first) + each frame's transform ->
    one Detections per frame, in frame pixels."""

    def __call__(self, outputs: dict, transforms: list[FitTransform]) -> list[Detections]: ...

    def on_device(self) -> DeviceDecoder | None:
        """The same decoding on the outputs' device (the GPU path), or None: decode on the host."""
