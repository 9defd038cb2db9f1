"""Annotators on the device: mask tints, class-map tints and box outlines drawn on the frame
tensor (HxWx3 uint8, any device), twins of ``pipeline.overlay.host``'s ``MaskAnnotator``,
``ClassMapAnnotator`` and ``BoxAnnotator`` (the same pixels, within a level of rounding); the
frame then comes to the host in one copy for the labels, legend (and the HUD)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.ops.masks_device import DeviceMasks
from pipeline.overlay.host import PALETTE, line_width
from pipeline.types import Detections


class MaskAnnotator:
    """Tints every mask pixel with its class colour; where masks overlap the more confident one
    shows (ties: the lower index). The masks are the decoder's, still on the device."""

    def __init__(self, alpha: float = 0.45):
        self.alpha = alpha

    def annotate(self, scene: torch.Tensor, detections: Detections, masks: DeviceMasks | None) -> None:
        if masks is None or len(detections) == 0:
            return
        dev = scene.device
        owner = torch.full(scene.shape[:2], -1, dtype=torch.int32, device=dev)
        for i in np.argsort(-detections.confidence, kind="stable")[::-1]:  # the most confident (ties: lowest index) is written last
            x1, y1, x2, y2 = masks.regions[i]
            region = owner[y1:y2, x1:x2]
            region[masks.crops[i]] = int(i)
        on = owner >= 0
        colours = torch.from_numpy(PALETTE[detections.class_id % len(PALETTE)].astype(np.float32)).to(dev)
        px = scene[on].float()
        scene[on] = (px * (1 - self.alpha) + colours[owner[on].long()] * self.alpha + 0.5).to(torch.uint8)


class ClassMapAnnotator:
    """Tints every pixel of a semantic class map with its class colour, class 0 (the background)
    left as it is: the twin of the host's tint (its legend is drawn on the host)."""

    def __init__(self, alpha: float = 0.45):
        self.alpha = alpha
        self._colours: dict[torch.device, torch.Tensor] = {}

    def annotate(self, scene: torch.Tensor, ids: torch.Tensor) -> None:
        """scene: HxWx3 uint8; ids: HxW uint8 class ids, on the scene's device."""
        dev = scene.device
        if dev not in self._colours:
            self._colours[dev] = torch.from_numpy(PALETTE[np.arange(256) % len(PALETTE)].astype(np.float32)).to(dev)
        on = ids != 0
        px = scene[on].float()
        scene[on] = (px * (1 - self.alpha) + self._colours[dev][ids[on].long()] * self.alpha + 0.5).to(torch.uint8)


class BoxAnnotator:
    """Box outlines in class colours: solid lines of ``line_width`` px centred on the box edges
    (OpenCV draws them anti-aliased on the host)."""

    def annotate(self, scene: torch.Tensor, detections: Detections) -> None:
        h, w = scene.shape[:2]
        t = line_width((h, w))
        lo, hi = t // 2, t - t // 2
        colours = torch.from_numpy(PALETTE[detections.class_id % len(PALETTE)]).to(scene.device)
        for (x1, y1, x2, y2), col in zip(np.round(detections.xyxy).astype(int).tolist(), colours):
            xa, xb, ya, yb = max(x1 - lo, 0), min(x2 + hi, w), max(y1 - lo, 0), min(y2 + hi, h)
            scene[ya : min(y1 + hi, h), xa:xb] = col
            scene[max(y2 - lo, 0) : yb, xa:xb] = col
            scene[ya:yb, xa : min(x1 + hi, w)] = col
            scene[ya:yb, max(x2 - lo, 0) : xb] = col
