"""Decoding settings shared by every family."""

from __future__ import annotations

from dataclasses import dataclass


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
