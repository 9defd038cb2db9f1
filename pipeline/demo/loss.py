"""The demo model's training loss: which cells learn which object, and how wrong they are.

Assignment (FCOS-style centre sampling): a cell is positive for an object when its centre lies
inside the object's box and within ``RADIUS`` strides of the box centre; an object too small
to hold any cell centre gets its nearest cell. A cell claimed by several objects learns the
smallest. Cells inside an ``iscrowd`` box that learn no object are ignored.

Losses, summed over the batch and divided by the number of positive cells:
- classes: quality focal loss (GFL) — the positive cell's target for its class is the IoU of
  its predicted box with the object's, so scores rank boxes by how well they fit, which is
  what mAP@0.5:0.95 rewards;
- boxes: generalized IoU loss (torchvision);
- masks: per positive cell (at most ``MASK_CELLS`` per image), binary cross-entropy of the
  prototype mix against the object's soft mask, inside the object's box only (the decoder
  crops to the box too), averaged over the box area.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torchvision.ops import generalized_box_iou_loss

from pipeline.models.rtnet import STRIDE

RADIUS = 2.5  # strides
MASK_CELLS = 48
WEIGHTS = {"cls": 1.0, "box": 2.5, "mask": 2.0}


def assign(centres: torch.Tensor, boxes: torch.Tensor, crowd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """centres: (N, 2) cell centres; boxes: (K, 4) xyxy; crowd: (K,) bool.
    Returns (N,) object index per cell (-1: background) and (N,) bool ignored cells."""
    n = len(centres)
    if len(boxes) == 0:
        return torch.full((n,), -1, dtype=torch.long), torch.zeros(n, dtype=torch.bool)
    cx, cy = centres[:, 0][None], centres[:, 1][None]
    x1, y1, x2, y2 = (boxes[:, i : i + 1] for i in range(4))
    inside = (cx > x1) & (cx < x2) & (cy > y1) & (cy < y2)  # (K, N)
    gx, gy = (x1 + x2) / 2, (y1 + y2) / 2
    r = RADIUS * STRIDE
    candidate = inside & ((cx - gx).abs() < r) & ((cy - gy).abs() < r) & ~crowd[:, None]
    empty = ~candidate.any(1) & ~crowd
    if empty.any():
        nearest = ((cx - gx) ** 2 + (cy - gy) ** 2).argmin(1)
        candidate[empty, nearest[empty]] = True
    area = (x2 - x1) * (y2 - y1)
    cost = torch.where(candidate, area, torch.full_like(area, float("inf")))
    best = cost.argmin(0)
    positive = candidate.any(0)
    index = torch.where(positive, best, torch.full_like(best, -1))
    ignored = ~positive & (inside & crowd[:, None]).any(0)
    return index, ignored


def pair_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(P, 4) and (P, 4) xyxy -> (P,) IoU of each pair."""
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = (a[:, 2:] - a[:, :2]).prod(1) + (b[:, 2:] - b[:, :2]).prod(1) - inter
    return inter / union.clamp(min=1e-6)


def losses(raw, targets: list[dict], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """raw: ``RtNet.raw(images)``; targets: per image {"boxes", "classes", "crowd", "masks"} tensors.
    Returns the weighted parts and their sum under "total"."""
    box, cls, coef, protos, centres = raw
    ltrb = F.softplus(box) * STRIDE
    pred = torch.cat([centres - ltrb[:, :2], centres + ltrb[:, 2:]], 1).transpose(1, 2)  # (B, N, 4)
    cells = centres[0].T
    total_cls = total_box = total_mask = box.new_zeros(())
    positives = 0
    for b, t in enumerate(targets):
        index, ignored = assign(cells, t["boxes"], t["crowd"])
        pos = index >= 0
        target = torch.zeros_like(cls[b].T)  # (N, nc)
        cells_pos = pos.nonzero()[:, 0]
        if len(cells_pos):
            gi = index[cells_pos]
            gt, boxes_pos = t["boxes"][gi], pred[b][cells_pos]
            total_box = total_box + generalized_box_iou_loss(boxes_pos, gt, reduction="sum")
            target[cells_pos, t["classes"][gi]] = pair_iou(boxes_pos.detach(), gt).clamp(min=0.05)
            positives += len(cells_pos)
            if protos is not None:
                some = cells_pos
                if len(some) > MASK_CELLS:
                    some = some[torch.randperm(len(some), generator=generator)[:MASK_CELLS]]
                total_mask = total_mask + _mask_loss(coef[b][:, some].T, protos[b], t["masks"][index[some]],
                                                     t["boxes"][index[some]]) * len(cells_pos) / len(some)
        logits = cls[b].T
        focal = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * (logits.sigmoid() - target).abs().pow(2)
        total_cls = total_cls + focal[~ignored].sum()
    n = max(positives, 1)
    parts = {"cls": WEIGHTS["cls"] * total_cls / n, "box": WEIGHTS["box"] * total_box / n, "mask": WEIGHTS["mask"] * total_mask / n}
    parts["total"] = sum(parts.values())
    return parts


def _mask_loss(coef: torch.Tensor, protos: torch.Tensor, masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """coef (P, 32), protos (32, Hp, Wp), masks (P, Hp, Wp) in 0..1, boxes (P, 4) input pixels -> summed loss."""
    c, hp, wp = protos.shape
    logits = (coef @ protos.reshape(c, -1)).reshape(-1, hp, wp)
    bx = boxes / 4  # input pixels -> prototype cells
    xs = torch.arange(wp, dtype=boxes.dtype) + 0.5
    ys = torch.arange(hp, dtype=boxes.dtype) + 0.5
    inside = ((xs[None, None] > bx[:, 0, None, None]) & (xs[None, None] < bx[:, 2, None, None])
              & (ys[None, :, None] > bx[:, 1, None, None]) & (ys[None, :, None] < bx[:, 3, None, None]))
    bce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none") * inside
    return (bce.sum((1, 2)) / inside.sum((1, 2)).clamp(min=1)).sum()
