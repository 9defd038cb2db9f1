"""Identity exchanges at true crossings: did the tracker keep each object's id as two look-alikes passed?

HOTA, IDF1 and ID switches say how often ids change, not why. Where the ground truth knows the
moments two objects of one class crossed in the picture (``crossings.json`` of
``pipeline.demo.crossings``), each crossing can be judged on its own: the id the tracker gave
each of the two just before and just after it.

Rules, per crossing (objects ``a``, ``b`` of class C, order flipped at frame ``f``):

- in every frame of the window before (``f - window .. f - 1``) and after (``f .. f + window - 1``)
  the tracked detections of class C (those with a ``tracker_id``) are matched to the ground truth
  instances of class C (iscrowd ones included: a half-hidden object keeps its identity),
  one to one by Hungarian assignment on IoU, pairs with IoU >= 0.5;
- ``a``'s id before is the tracker id matched to ``a`` in most frames of the window before (on a
  tie, the one seen first), likewise after, and for ``b``; an object matched in no frame of a
  window has no id there (None);
- the crossing is ``exchanged`` when ``a``'s id before is ``b``'s id after or ``b``'s id before is
  ``a``'s id after (counted once even if both hold); else ``new_id`` when ``a`` or ``b`` has an id
  both before and after and they differ (the track was lost and a new one started, or it took a
  third object's id); else ``kept`` when both have the same id before and after; else
  ``unmatched`` (an object not tracked in one of the windows: nothing to judge).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline.ops.boxes import box_iou

MATCH_IOU = 0.5


def _matches(gt_boxes: np.ndarray, gt_ids: list[int], trk_boxes: np.ndarray, trk_ids: list[int]) -> dict[int, int]:
    """One frame: ground truth track id -> tracker id, Hungarian on IoU, pairs with IoU >= 0.5."""
    from scipy.optimize import linear_sum_assignment

    if not len(gt_ids) or not len(trk_ids):
        return {}
    iou = box_iou(gt_boxes, trk_boxes)
    rows, cols = linear_sum_assignment(-np.where(iou >= MATCH_IOU, iou, 0.0))
    return {gt_ids[r]: trk_ids[c] for r, c in zip(rows, cols) if iou[r, c] >= MATCH_IOU}


def _most_common(ids: list[int]) -> int | None:
    return Counter(ids).most_common(1)[0][0] if ids else None  # Counter keeps first-seen order on ties


def identity_exchanges(records: list[dict], gt: dict, crossings: dict, image_of: dict[int, int], window: int = 15) -> dict:
    """Judge the tracker at each true crossing (rules in the module docstring).

    ``records``: rtpipe JSONL records (``{"index", "detections": [{"xyxy", "class_name",
    "tracker_id" (int or None)}]}``); ``gt``: COCO ground truth whose annotations carry
    ``track_id``; ``crossings``: a loaded ``crossings.json`` (``{"crossings": [{"frame", "ids":
    [a, b], "class"}]}``); ``image_of``: frame index -> COCO image id. Frames not in ``records``
    are not looked at.

    Returns ``{"crossings": n, "exchanges": k, "new_ids": m, "per_crossing": [{"frame", "ids",
    "class", "before": [id of a, id of b], "after": [...], "outcome"}]}`` with ``outcome`` one of
    ``exchanged``, ``new_id``, ``kept``, ``unmatched``.
    """
    category_of = {c["name"]: c["id"] for c in gt["categories"]}
    by_image: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    by_frame = {int(r["index"]): r for r in records}
    cache: dict[tuple[int, str], dict[int, int]] = {}

    def matched(frame: int, name: str) -> dict[int, int]:
        key = (frame, name)
        if key not in cache:
            rec = by_frame.get(frame)
            if rec is None or frame not in image_of:
                cache[key] = {}
            else:
                anns = [a for a in by_image.get(image_of[frame], []) if a["category_id"] == category_of.get(name)]
                g = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float64).reshape(-1, 4)
                dets = [d for d in rec["detections"] if d.get("class_name") == name and d.get("tracker_id") is not None]
                t = np.array([d["xyxy"] for d in dets], np.float64).reshape(-1, 4)
                cache[key] = _matches(g, [a["track_id"] for a in anns], t, [int(d["tracker_id"]) for d in dets])
        return cache[key]

    per, exchanges, new_ids = [], 0, 0
    for c in crossings["crossings"]:
        f, (a, b), name = int(c["frame"]), c["ids"], c["class"]
        spans = (range(f - window, f), range(f, f + window))
        ids = [[_most_common([m[obj] for m in (matched(k, name) for k in span) if obj in m]) for obj in (a, b)]
               for span in spans]
        (a0, b0), (a1, b1) = ids
        if (a0 is not None and a0 == b1) or (b0 is not None and b0 == a1):
            outcome = "exchanged"
            exchanges += 1
        elif any(x0 is not None and x1 is not None and x0 != x1 for x0, x1 in ((a0, a1), (b0, b1))):
            outcome = "new_id"
            new_ids += 1
        elif None in (a0, b0, a1, b1):
            outcome = "unmatched"
        else:
            outcome = "kept"
        per.append({"frame": f, "ids": [a, b], "class": name, "before": [a0, b0], "after": [a1, b1], "outcome": outcome})
    return {"crossings": len(per), "exchanges": exchanges, "new_ids": new_ids, "per_crossing": per}
