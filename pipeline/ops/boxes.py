"""Box conversions and overlap."""

from __future__ import annotations

import numpy as np


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) centre-x, centre-y, width, height -> (N, 4) x1, y1, x2, y2 (same dtype)."""
    out = np.empty_like(boxes)
    half = boxes[:, 2:4] / 2
    out[:, 0:2] = boxes[:, 0:2] - half
    out[:, 2:4] = boxes[:, 0:2] + half
    return out


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N,) areas; degenerate boxes have area 0."""
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) and (M, 4) xyxy -> (N, M) intersection over union; 0 where the union is 0."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)
