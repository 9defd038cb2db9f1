"""Greedy non-maximum suppression on numpy arrays."""

from __future__ import annotations

import numpy as np

from pipeline.ops.boxes import box_area


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices (int64) of the boxes kept, highest score first.

    boxes: (N, 4) xyxy. scores: (N,). A box is dropped when its IoU with a higher-scoring kept
    box is strictly greater than ``iou_threshold`` (torchvision's rule). Ties in score keep the
    lower index first.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = boxes.astype(np.float64, copy=False)
    order = np.argsort(-scores, kind="stable")
    areas = box_area(boxes)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        lt = np.maximum(boxes[i, :2], boxes[rest, :2])
        rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[:, 0] * wh[:, 1]
        union = areas[i] + areas[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, inter / union, 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Same contract as :func:`nms`, plus classes: (N,) integer class ids. Works by shifting each
    class's boxes to a region of its own, so it is one NMS pass, not one per class.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = boxes.astype(np.float64, copy=False)
    span = float(boxes.max() - min(boxes.min(), 0.0)) + 1.0
    shifted = boxes + (classes.astype(np.float64) * span)[:, None]
    return nms(shifted, scores, iou_threshold)
