"""YOLO family (Ultralytics YOLOv8/YOLO11 layout): metadata and decoding of raw outputs.

Raw layout: ``output0`` (B, 4 + nc (+ nm), N) with cx, cy, w, h in input pixels, class scores
after sigmoid and, for segmentation, nm mask coefficients; ``output1`` (B, nm, Hp, Wp)
prototypes.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np

from pipeline.ops import batched_nms, cxcywh_to_xyxy, masks_from_prototypes, nms
from pipeline.types import Detections, LetterboxMeta


def parse_names(value: str) -> list[str]:
    """Ultralytics writes class names as a Python dict literal, e.g. ``{0: 'person', 1: 'car'}``.

    Parsed with ``ast.literal_eval`` (literals only, never code); a list literal is accepted too.
    """
    try:
        names = ast.literal_eval(value)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"model metadata 'names' is not a dict or list literal: {value[:80]!r}") from exc
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, (list, tuple)):
        return [str(n) for n in names]
    raise ValueError(f"model metadata 'names' is not a dict or list literal: {value[:80]!r}")


@dataclass(frozen=True)
class DecodeSettings:
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    classes: tuple[int, ...] | None = None
    agnostic: bool = False


class YoloDecoder:
    """outputs + letterbox metas -> one Detections per image (frame pixels)."""

    def __init__(self, num_classes: int, settings: DecodeSettings, max_candidates: int = 30000):
        self.nc = num_classes
        self.s = settings
        self.max_candidates = max_candidates

    def __call__(self, outputs: dict[str, np.ndarray], metas: list[LetterboxMeta]) -> list[Detections]:
        preds = outputs["output0"]
        protos = outputs.get("output1")
        if preds.shape[1] < 4 + self.nc:
            raise ValueError(f"output0 has {preds.shape[1]} channels, fewer than 4 + {self.nc} classes")
        return [self._one(preds[i], None if protos is None else protos[i], metas[i]) for i in range(len(metas))]

    def _one(self, pred: np.ndarray, protos: np.ndarray | None, meta: LetterboxMeta) -> Detections:
        s = self.s
        scores_all = pred[4 : 4 + self.nc]  # (nc, N)
        cls = scores_all.argmax(0)
        score = scores_all[cls, np.arange(pred.shape[1])]
        keep = score > s.conf
        if s.classes is not None:
            keep &= np.isin(cls, s.classes)
        idx = np.flatnonzero(keep)
        if len(idx) > self.max_candidates:
            idx = idx[np.argsort(-score[idx], kind="stable")[: self.max_candidates]]
        boxes = cxcywh_to_xyxy(pred[:4, idx].T.astype(np.float32))
        score, cls = score[idx], cls[idx]
        keep = nms(boxes, score, s.iou) if s.agnostic else batched_nms(boxes, score, cls, s.iou)
        keep = keep[: s.max_det]
        xyxy = meta.to_frame(boxes[keep])
        mask = None
        if protos is not None:
            coef = pred[4 + self.nc :, idx[keep]].T
            mask = masks_from_prototypes(coef, protos, xyxy, meta.frame_hw, meta.input_hw, meta.scale, (meta.pad_x, meta.pad_y))
        return Detections(xyxy, score[keep], cls[keep], mask)
