"""Tracking accuracy against ground truth: HOTA, MOTA, IDF1 and ID switches, and line counts.

The metrics are Roboflow ``trackers``' evaluator (``trackers.eval``; its code follows
TrackEval's matching and formulas and is tested against TrackEval's numbers). Data are
prepared as TrackEval prepares its multi-class benchmarks: each class is a sequence of its own
(ground truth and tracked detections of that class; detections without a confirmed track are
not tracker output), a detection that best matches (IoU >= 0.5) an instance marked iscrowd is
removed (neither a hit nor a false positive), ids are numbered per class, and the classes are
combined detection-weighted (TrackEval's ``combine_sequences``). CLEAR and Identity match at
IoU 0.5; HOTA averages over IoU 0.05..0.95.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline.tracking import require_trackers

CROWD_IOU = 0.5


def _xywh(xyxy) -> np.ndarray:
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)


def _drop_crowd_matches(gt_boxes, crowd, trk_boxes, trk_ids):
    """Tracker boxes whose best match (Hungarian on IoU >= 0.5) is a crowd instance are removed."""
    from scipy.optimize import linear_sum_assignment
    from trackers.eval import box_iou

    if not crowd.any() or not len(trk_ids):
        return trk_boxes, trk_ids
    iou = box_iou(gt_boxes, trk_boxes, box_format="xywh")
    iou[iou < CROWD_IOU - 1e-10] = 0
    rows, cols = linear_sum_assignment(-iou)
    hit = iou[rows, cols] > 1e-10
    keep = np.ones(len(trk_ids), bool)
    keep[cols[hit & crowd[rows]]] = False
    return trk_boxes[keep], trk_ids[keep]


def _sequence(frames: list[tuple[list, list]]) -> tuple[list, list, list]:
    """Per frame (gt [(id, xywh, crowd)], tracks [(id, xywh)]) -> the evaluator's inputs, ids numbered from 0."""
    from trackers.eval import box_iou

    gt_map: dict[int, int] = {}
    trk_map: dict[int, int] = {}
    gt_ids, trk_ids, sims = [], [], []
    for gts, trks in frames:
        g_boxes = np.array([b for _, b, _ in gts], np.float64).reshape(-1, 4)
        crowd = np.array([c for _, _, c in gts], bool)
        g_ids = np.array([i for i, _, _ in gts], np.int64)
        t_boxes = np.array([b for _, b in trks], np.float64).reshape(-1, 4)
        t_ids = np.array([i for i, _ in trks], np.int64)
        t_boxes, t_ids = _drop_crowd_matches(g_boxes, crowd, t_boxes, t_ids)
        g_boxes, g_ids = g_boxes[~crowd], g_ids[~crowd]
        gt_ids.append(np.array([gt_map.setdefault(int(i), len(gt_map)) for i in g_ids], np.intp))
        trk_ids.append(np.array([trk_map.setdefault(int(i), len(trk_map)) for i in t_ids], np.intp))
        sims.append(box_iou(g_boxes, t_boxes, box_format="xywh"))
    return gt_ids, trk_ids, sims


def _summary(clear: dict, hota: dict, identity: dict) -> dict:
    return {"HOTA": round(hota["HOTA"], 4), "DetA": round(hota["DetA"], 4), "AssA": round(hota["AssA"], 4),
            "MOTA": round(clear["MOTA"], 4), "MOTP": round(clear["MOTP"], 4), "IDF1": round(identity["IDF1"], 4),
            "IDSW": int(clear["IDSW"]), "Frag": int(clear["Frag"]), "FP": int(clear["CLR_FP"]), "FN": int(clear["CLR_FN"]),
            "MT": int(clear["MT"]), "ML": int(clear["ML"])}


def tracking_accuracy(records: list[dict], gt: dict, image_of: dict[int, int]) -> dict | None:
    """Scores of the tracked detections in ``records`` (JSONL records of the frames to score)
    against COCO ``gt`` whose annotations carry ``track_id``; None when either side has no ids."""
    tracked = any("tracker_id" in d for rec in records for d in rec["detections"])
    if not tracked or not gt["annotations"] or not all("track_id" in a for a in gt["annotations"]):
        return None
    require_trackers()
    from trackers.eval import (
        aggregate_clear_metrics,
        aggregate_hota_metrics,
        aggregate_identity_metrics,
        compute_clear_metrics,
        compute_hota_metrics,
        compute_identity_metrics,
    )
    names = {c["id"]: c["name"] for c in gt["categories"]}
    by_image: dict[int, list] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    per_class, parts = {}, []
    in_order = sorted(records, key=lambda r: int(r["index"]))
    for cid, name in names.items():
        frames = []
        for rec in in_order:
            anns = [a for a in by_image.get(image_of[int(rec["index"])], []) if a["category_id"] == cid]
            gts = [(a["track_id"], np.asarray(a["bbox"], np.float64), bool(a.get("iscrowd"))) for a in anns]  # COCO boxes are xywh
            trks = [(d["tracker_id"], _xywh(d["xyxy"])[0]) for d in rec["detections"]
                    if d.get("class_name") == name and d.get("tracker_id") is not None]
            frames.append((gts, trks))
        if not any(g or t for g, t in frames):
            continue
        seq = _sequence(frames)
        scores = (compute_clear_metrics(*seq), compute_hota_metrics(*seq), compute_identity_metrics(*seq))
        parts.append(scores)
        per_class[name] = _summary(*scores)
    if not parts:
        return None
    combined = _summary(aggregate_clear_metrics([p[0] for p in parts]), aggregate_hota_metrics([p[1] for p in parts]),
                        aggregate_identity_metrics([p[2] for p in parts]))
    return {**combined, "per_class": per_class}


def count_accuracy(events: list[dict], truth: dict) -> dict:
    """Line counts from an events JSONL's records against ``crossings.json`` (``truth``): per line,
    true and counted per direction and class, and accuracy = 1 - sum |counted - true| / sum true
    over the (direction, class) cells (0 at worst; 1 when both are zero)."""
    counted = Counter((e["name"], e["event"], e["class_name"]) for e in events if e["event"] in ("line_in", "line_out"))
    out = {}
    for line in truth["lines"]:
        name, true = line["name"], truth["counts"].get(line["name"], {})
        cells = {(ev, cls) for ev in ("line_in", "line_out") for cls in true.get(ev, {}) if cls != "all"}
        cells |= {(ev, cls) for (n, ev, cls) in counted if n == name}
        error = sum(abs(counted[(name, ev, cls)] - true.get(ev, {}).get(cls, 0)) for ev, cls in cells)
        total = sum(true.get(ev, {}).get("all", 0) for ev in ("line_in", "line_out"))
        out[name] = {"true": {ev: true.get(ev, {}).get("all", 0) for ev in ("line_in", "line_out")},
                     "counted": {ev: sum(n for (nm, e, _), n in counted.items() if nm == name and e == ev)
                                 for ev in ("line_in", "line_out")},
                     "abs_error": error, "accuracy": round(max(0.0, 1 - error / total), 4) if total else float(error == 0)}
    return out
