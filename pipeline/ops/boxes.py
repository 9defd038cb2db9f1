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


def decode_deltas(deltas: np.ndarray, anchors: np.ndarray, weights: tuple[float, float, float, float], clip: float) -> np.ndarray:
    """Faster R-CNN box coding (torchvision ``BoxCoder.decode_single``), float32.

    deltas: (N, 4) dx, dy, dw, dh. anchors: (N, 4) xyxy. weights divide the deltas; dw and dh
    are clamped to ``clip`` before ``exp``. Returns (N, 4) xyxy.
    """
    deltas = deltas.astype(np.float32, copy=False)
    anchors = anchors.astype(np.float32, copy=False)
    wa = anchors[:, 2] - anchors[:, 0]
    ha = anchors[:, 3] - anchors[:, 1]
    cx = anchors[:, 0] + np.float32(0.5) * wa
    cy = anchors[:, 1] + np.float32(0.5) * ha
    wx, wy, ww, wh = (np.float32(v) for v in weights)
    dw = np.minimum(deltas[:, 2] / ww, np.float32(clip))
    dh = np.minimum(deltas[:, 3] / wh, np.float32(clip))
    pcx = deltas[:, 0] / wx * wa + cx
    pcy = deltas[:, 1] / wy * ha + cy
    half_w = np.float32(0.5) * (np.exp(dw) * wa)
    half_h = np.float32(0.5) * (np.exp(dh) * ha)
    return np.stack([pcx - half_w, pcy - half_h, pcx + half_w, pcy + half_h], axis=1)


def decode_ltrb(distances: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """FCOS box coding (torchvision ``BoxLinearCoder(normalize_by_size=True).decode``), float32.

    distances: (N, 4) left, top, right, bottom from the anchor centre, in anchor sizes.
    anchors: (N, 4) xyxy. Returns (N, 4) xyxy.
    """
    distances = distances.astype(np.float32, copy=False)
    anchors = anchors.astype(np.float32, copy=False)
    cx = np.float32(0.5) * (anchors[:, 0] + anchors[:, 2])
    cy = np.float32(0.5) * (anchors[:, 1] + anchors[:, 3])
    size = np.stack([anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]] * 2, axis=1)
    d = distances * size
    return np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], axis=1)
