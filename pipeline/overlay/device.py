"""Drawing on the device: mask tints and box outlines on the frame tensor, then one copy to
the host, where ``pipeline.overlay.host`` adds the text labels (and the HUD)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.ops.masks_device import DeviceMasks
from pipeline.overlay.host import PALETTE, line_width
from pipeline.types import Detections


def blend_masks(image: torch.Tensor, dets: Detections, masks: DeviceMasks | None, alpha: float = 0.45) -> None:
    """Tint every mask pixel with its class colour, in place (HxWx3 uint8 tensor); where masks
    overlap the more confident one shows. Same pixels as ``pipeline.overlay.host.blend_masks``."""
    if masks is None or len(dets) == 0:
        return
    dev = image.device
    owner = torch.full(image.shape[:2], -1, dtype=torch.int32, device=dev)
    for i in np.argsort(-dets.confidence, kind="stable")[::-1]:  # the most confident (ties: lowest index) is written last
        x1, y1, x2, y2 = masks.regions[i]
        region = owner[y1:y2, x1:x2]
        region[masks.crops[i]] = int(i)
    on = owner >= 0
    colours = torch.from_numpy(PALETTE[dets.class_id % len(PALETTE)].astype(np.float32)).to(dev)
    px = image[on].float()
    image[on] = (px * (1 - alpha) + colours[owner[on].long()] * alpha + 0.5).to(torch.uint8)


def draw_boxes(image: torch.Tensor, dets: Detections) -> None:
    """Box outlines in class colours, in place: solid lines of ``line_width`` px centred on the
    box edges (OpenCV draws them anti-aliased on the CPU path)."""
    h, w = image.shape[:2]
    t = line_width((h, w))
    lo, hi = t // 2, t - t // 2
    colours = torch.from_numpy(PALETTE[dets.class_id % len(PALETTE)]).to(image.device)
    for (x1, y1, x2, y2), col in zip(np.round(dets.xyxy).astype(int).tolist(), colours):
        xa, xb, ya, yb = max(x1 - lo, 0), min(x2 + hi, w), max(y1 - lo, 0), min(y2 + hi, h)
        image[ya : min(y1 + hi, h), xa:xb] = col
        image[max(y2 - lo, 0) : yb, xa:xb] = col
        image[ya:yb, xa : min(x1 + hi, w)] = col
        image[ya:yb, max(x2 - lo, 0) : xb] = col
