"""Instance masks from YOLO prototypes on the device: the tensor twin of ``pipeline.ops.masks``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.types import BoxMasks, FitTransform


@dataclass
class DeviceMasks:
    """A frame's instance masks on the device: crops[i] (h_i, w_i) bool inside regions[i]
    (x1, y1, x2, y2, frame pixels) — what the device overlay blends."""

    crops: list[torch.Tensor]
    regions: np.ndarray


def mask_crops(coefficients: torch.Tensor, prototypes: torch.Tensor, boxes: np.ndarray,
               transform: FitTransform) -> tuple[list[torch.Tensor], np.ndarray]:
    """Instance masks inside each box: the tensor twin of ``pipeline.ops.masks.masks_from_prototypes``.

    coefficients: (N, C). prototypes: (C, Hp, Wp). boxes: (N, 4) float xyxy in frame pixels.
    Region i holds the pixels whose index lies in box i (x1 <= x < x2); each pixel centre samples the mix
    ``coefficients @ prototypes`` bilinearly (clamped at the edges) and is on where the logit
    is > 0. Returns (crops, regions int32 (N, 4)).
    """
    h, w = transform.frame_hw
    c, hp, wp = prototypes.shape
    ih, iw = transform.input_hw
    sx, sy = transform.scale_x * wp / iw, transform.scale_y * hp / ih
    bx = (0.5 * transform.scale_x + transform.pad_x) * wp / iw - 0.5
    by = (0.5 * transform.scale_y + transform.pad_y) * hp / ih - 0.5
    regions = np.ceil(boxes).astype(np.int32).reshape(-1, 4)  # pixels x with x1 <= x < x2
    regions = regions.clip(0, [w, h, w, h])
    regions[:, 2:] = np.maximum(regions[:, 2:], regions[:, :2])
    mix = (coefficients.float() @ prototypes.float().reshape(c, -1)).reshape(-1, hp, wp)
    dev = prototypes.device
    crops = []
    for i, (x1, y1, x2, y2) in enumerate(regions.tolist()):
        xs = (torch.arange(x1, x2, device=dev, dtype=torch.float64) * sx + bx).clamp_(0, wp - 1).float()
        ys = (torch.arange(y1, y2, device=dev, dtype=torch.float64) * sy + by).clamp_(0, hp - 1).float()
        x0, y0 = xs.floor().long(), ys.floor().long()
        fx, fy = xs - x0, ys - y0
        x1i, y1i = (x0 + 1).clamp_(max=wp - 1), (y0 + 1).clamp_(max=hp - 1)
        m = mix[i]
        top = m[y0][:, x0] * (1 - fx) + m[y0][:, x1i] * fx
        bottom = m[y1i][:, x0] * (1 - fx) + m[y1i][:, x1i] * fx
        crops.append((top * (1 - fy)[:, None] + bottom * fy[:, None]) > 0)
    return crops, regions


def crops_to_host(crops: list[torch.Tensor], regions: np.ndarray, frame_hw: tuple[int, int]) -> BoxMasks:
    """Device crops -> BoxMasks, in one device-to-host copy."""
    if not crops:
        return BoxMasks((), np.zeros((0, 4), np.int32), frame_hw)
    flat = torch.cat([c.reshape(-1) for c in crops]).cpu().numpy()
    sizes = np.cumsum([c.numel() for c in crops])[:-1]
    parts = np.split(flat, sizes)
    return BoxMasks(tuple(p.reshape(tuple(c.shape)) for p, c in zip(parts, crops)), regions, frame_hw)
