"""Tracking scores (trackers.eval, prepared as TrackEval prepares multi-class data) and line count accuracy."""

import pytest

from pipeline.tracking.accuracy import count_accuracy, tracking_accuracy

CATS = [{"id": 1, "name": "car"}, {"id": 2, "name": "pedestrian"}]


def gt_and_records(frames: int = 10, swap_at: int | None = None, crowd_fp: bool = False):
    """Two cars moving right and a pedestrian, tracked; optionally the cars' ids swap from ``swap_at``."""
    images, anns, records = [], [], []
    for k in range(frames):
        images.append({"id": k + 1, "frame_index": k})
        objs = [(0, 1, [10 + 5 * k, 10, 40, 30]), (1, 1, [100 + 5 * k, 50, 40, 30]), (2, 2, [300, 200, 20, 50])]
        dets = []
        for tid, cat, (x, y, w, h) in objs:
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": cat, "track_id": tid, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            ours = tid + 1
            if swap_at is not None and k >= swap_at and tid < 2:
                ours = 2 - tid
            dets.append({"xyxy": [x, y, x + w, y + h], "score": 0.9, "class_name": CATS[cat - 1]["name"], "tracker_id": ours})
        if crowd_fp:
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": 1, "track_id": 9, "bbox": [500, 300, 30, 30],
                         "area": 900, "iscrowd": 1})
            dets.append({"xyxy": [500, 300, 530, 330], "score": 0.5, "class_name": "car", "tracker_id": 7})
        dets.append({"xyxy": [0, 0, 5, 5], "score": 0.3, "class_name": "car", "tracker_id": None})  # unconfirmed: not tracker output
        records.append({"index": k, "detections": dets})
    gt = {"images": images, "annotations": anns, "categories": CATS}
    return records, gt, {k: k + 1 for k in range(frames)}


def test_perfect_tracks_score_one():
    t = tracking_accuracy(*gt_and_records())
    assert (t["HOTA"], t["MOTA"], t["IDF1"], t["IDSW"]) == (1.0, 1.0, 1.0, 0)
    assert set(t["per_class"]) == {"car", "pedestrian"}


def test_an_id_swap_is_counted_and_costs_identity():
    t = tracking_accuracy(*gt_and_records(swap_at=5))
    assert t["IDSW"] == 2 and t["per_class"]["car"]["IDSW"] == 2
    assert t["IDF1"] < 0.8 and t["MOTA"] < 1.0
    assert t["per_class"]["pedestrian"]["IDF1"] == 1.0


def test_a_detection_of_a_crowd_instance_is_neither_hit_nor_false_positive():
    t = tracking_accuracy(*gt_and_records(crowd_fp=True))
    assert (t["MOTA"], t["FP"]) == (1.0, 0)


def test_without_ids_on_either_side_there_is_no_tracking_score():
    records, gt, image_of = gt_and_records()
    untracked = [{**r, "detections": [{k: v for k, v in d.items() if k != "tracker_id"} for d in r["detections"]]} for r in records]
    assert tracking_accuracy(untracked, gt, image_of) is None
    for a in gt["annotations"]:
        del a["track_id"]
    assert tracking_accuracy(records, gt, image_of) is None


def test_count_accuracy_per_line():
    truth = {"lines": [{"name": "gate"}, {"name": "quiet"}],
             "counts": {"gate": {"line_in": {"all": 3, "car": 3}, "line_out": {"all": 1, "pedestrian": 1}},
                        "quiet": {"line_in": {"all": 0}, "line_out": {"all": 0}}}}
    events = [{"name": "gate", "event": "line_in", "class_name": "car"}] * 2 + \
             [{"name": "gate", "event": "line_out", "class_name": "car"}]  # one car missed, one wrong class
    got = count_accuracy(events, truth)
    assert got["gate"]["counted"] == {"line_in": 2, "line_out": 1}
    assert got["gate"]["abs_error"] == 3 and got["gate"]["accuracy"] == pytest.approx(0.25)
    assert got["quiet"]["accuracy"] == 1.0
