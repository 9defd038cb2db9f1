"""YOLO decoding on the device: the tensor twin of ``pipeline.models.yolo.YoloDecoder``.

Candidates above the score threshold, class filter, top ``max_candidates``, class-aware NMS
(``torchvision.ops.batched_nms``), ``max_det``, boxes mapped to frame pixels, and instance
masks sampled from the prototypes inside each box, all on the outputs' device. Only the
final boxes and mask crops come to the host, in one copy each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import batched_nms, nms

from pipeline.models.settings import DecodeSettings
from pipeline.types import BoxMasks, Detections, LetterboxMeta


@dataclass
class DeviceMasks:
    """A frame's instance masks on the device: crops[i] (h_i, w_i) bool inside regions[i]
    (x1, y1, x2, y2, frame pixels) — what the device overlay blends."""

    crops: list[torch.Tensor]
    regions: np.ndarray


def to_frame(xyxy: torch.Tensor, meta: LetterboxMeta) -> torch.Tensor:
    """(N, 4) boxes in input pixels -> frame pixels, clipped (as ``LetterboxMeta.to_frame``)."""
    h, w = meta.frame_hw
    out = torch.empty_like(xyxy)
    out[:, 0::2] = ((xyxy[:, 0::2] - meta.pad_x) / meta.scale_x).clamp(0, w)
    out[:, 1::2] = ((xyxy[:, 1::2] - meta.pad_y) / meta.scale_y).clamp(0, h)
    return out


def mask_crops(coefficients: torch.Tensor, prototypes: torch.Tensor, boxes: np.ndarray,
               meta: LetterboxMeta) -> tuple[list[torch.Tensor], np.ndarray]:
    """Instance masks inside each box: the tensor twin of ``pipeline.ops.masks_from_prototypes``.

    coefficients: (N, C). prototypes: (C, Hp, Wp). boxes: (N, 4) float xyxy in frame pixels.
    Region i holds the pixels whose index lies in box i (x1 <= x < x2); each pixel centre samples the mix
    ``coefficients @ prototypes`` bilinearly (clamped at the edges) and is on where the logit
    is > 0. Returns (crops, regions int32 (N, 4)).
    """
    h, w = meta.frame_hw
    c, hp, wp = prototypes.shape
    ih, iw = meta.input_hw
    sx, sy = meta.scale_x * wp / iw, meta.scale_y * hp / ih
    bx = (0.5 * meta.scale_x + meta.pad_x) * wp / iw - 0.5
    by = (0.5 * meta.scale_y + meta.pad_y) * hp / ih - 0.5
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


class YoloTensorDecoder:
    """outputs (tensors, any device) + metas -> [(Detections on the host, DeviceMasks or None)]."""

    def __init__(self, num_classes: int, settings: DecodeSettings, max_candidates: int = 30000):
        self.nc, self.s, self.max_candidates = num_classes, settings, max_candidates

    def __call__(self, outputs: dict[str, torch.Tensor], metas: list[LetterboxMeta]) -> list[tuple[Detections, DeviceMasks | None]]:
        preds, protos = outputs["output0"], outputs.get("output1")
        if preds.shape[1] < 4 + self.nc:
            raise ValueError(f"output0 has {preds.shape[1]} channels, fewer than 4 + {self.nc} classes")
        return [self._one(preds[i].float(), None if protos is None else protos[i], metas[i]) for i in range(len(metas))]

    def _one(self, pred: torch.Tensor, protos: torch.Tensor | None, meta: LetterboxMeta):
        s = self.s
        score, cls = pred[4 : 4 + self.nc].max(0)
        keep = score > s.conf
        if s.classes is not None:
            keep &= torch.isin(cls, torch.tensor(s.classes, device=cls.device))
        idx = keep.nonzero().squeeze(1)
        if len(idx) > self.max_candidates:
            idx = idx[score[idx].argsort(descending=True, stable=True)[: self.max_candidates]]
        cxcywh = pred[:4, idx].T
        boxes = torch.cat([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
        score, cls = score[idx], cls[idx]
        kept = nms(boxes, score, s.iou) if s.agnostic else batched_nms(boxes, score, cls, s.iou)
        kept = kept[: s.max_det]
        xyxy = to_frame(boxes[kept], meta)
        host = torch.cat([xyxy, score[kept, None], cls[kept, None].float()], 1).cpu().numpy()
        xyxy_h, score_h, cls_h = host[:, :4], host[:, 4], host[:, 5].astype(np.int32)
        if protos is None:
            return Detections(xyxy_h, score_h, cls_h), None
        coef = pred[4 + self.nc :, idx[kept]].T
        crops, regions = mask_crops(coef, protos, xyxy_h, meta)
        host_masks = crops_to_host(crops, regions, meta.frame_hw)
        # as Ultralytics' predictor does, a segmentation without a single mask pixel is no detection
        has = np.array([c.any() for c in host_masks.crops], bool)
        det = Detections(xyxy_h, score_h, cls_h, host_masks)
        if not has.all():
            det = det[has]
            crops, regions = [c for c, k in zip(crops, has) if k], regions[has]
        return det, DeviceMasks(crops, regions)
