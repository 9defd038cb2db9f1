"""YOLO ``dense`` decoding on the device: the tensor twin of ``pipeline.models.yolo.DenseDecoder``.

Candidates above the score threshold, class filter, top ``max_candidates``, class-aware NMS
(``torchvision.ops.batched_nms``), ``max_det``, boxes mapped to frame pixels, and instance
masks sampled from the prototypes inside each box, all on the outputs' device. Only the
final boxes and mask crops come to the host, in one copy each.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import batched_nms, nms

from pipeline.models.decoder import DecodeSettings
from pipeline.models.yolo import nonempty
from pipeline.ops.masks_device import DeviceMasks, crops_to_host, mask_crops
from pipeline.types import Detections, FitTransform


class DenseDeviceDecoder:
    """outputs (tensors, any device) + transforms -> [(Detections on the host, DeviceMasks or None)]."""

    def __init__(self, num_classes: int, settings: DecodeSettings, max_candidates: int = 30000):
        self.nc, self.s, self.max_candidates = num_classes, settings, max_candidates

    def __call__(self, outputs: dict[str, torch.Tensor], transforms: list[FitTransform]) -> list[tuple[Detections, DeviceMasks | None]]:
        preds, protos = outputs["output0"], outputs.get("output1")
        if preds.shape[1] < 4 + self.nc:
            raise ValueError(f"output0 has {preds.shape[1]} channels, fewer than 4 + {self.nc} classes")
        return [self._one(preds[i].float(), None if protos is None else protos[i], transforms[i]) for i in range(len(transforms))]

    def _one(self, pred: torch.Tensor, protos: torch.Tensor | None, transform: FitTransform):
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
        xyxy = transform.to_frame(boxes[kept])
        host = torch.cat([xyxy, score[kept, None], cls[kept, None].float()], 1).cpu().numpy()
        xyxy_h, score_h, cls_h = host[:, :4], host[:, 4], host[:, 5].astype(np.int32)
        if protos is None:
            return Detections(xyxy_h, score_h, cls_h), None
        coef = pred[4 + self.nc :, idx[kept]].T
        crops, regions = mask_crops(coef, protos, xyxy_h, transform)
        host_masks = crops_to_host(crops, regions, transform.frame_hw)
        has = nonempty(host_masks)
        det = Detections(xyxy_h, score_h, cls_h, host_masks)
        if not has.all():
            det = det[has]
            crops, regions = [c for c, k in zip(crops, has) if k], regions[has]
        return det, DeviceMasks(crops, regions)
