"""Identity exchanges at true crossings: hand-made tracks that keep, exchange or renew their ids."""

import pytest

from pipeline.tracking.exchanges import identity_exchanges

CATS = [{"id": 1, "name": "pedestrian"}, {"id": 2, "name": "car"}]
FRAMES, CROSS = 40, 20


def clip(ids_of, extra=None):
    """Two pedestrians (track ids 0 and 1) walking towards each other, level at frame 20, and a car (2).
    ``ids_of(frame, track)`` -> the tracker id the tracker gives that object (None: not tracked)."""
    images, anns, records = [], [], []
    for k in range(FRAMES):
        images.append({"id": 100 + k, "frame_index": k})
        objs = [(0, 1, [100 + 5 * k, 50, 20, 60]), (1, 1, [300 - 5 * k, 52, 20, 60]), (2, 2, [400, 200, 80, 40])]
        dets = []
        for tid, cat, (x, y, w, h) in objs:
            anns.append({"id": len(anns) + 1, "image_id": 100 + k, "category_id": cat, "track_id": tid,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            dets.append({"xyxy": [x + 1, y, x + w + 1, y + h], "score": 0.9, "class_name": CATS[cat - 1]["name"],
                         "tracker_id": ids_of(k, tid)})
        records.append({"index": k, "detections": dets})
    gt = {"images": images, "annotations": anns, "categories": CATS}
    crossings = {"crossings": [{"frame": CROSS, "ids": [0, 1], "class": "pedestrian"}]}
    return records, gt, crossings, {k: 100 + k for k in range(FRAMES)}


@pytest.mark.parametrize(
    "ids_of, outcome, before, after",
    [
        (lambda k, t: t + 1, "kept", [1, 2], [1, 2]),
        (lambda k, t: (2 - t if t < 2 and k >= CROSS + 2 else t + 1), "exchanged", [1, 2], [2, 1]),
        (lambda k, t: (7 if t == 0 and k >= CROSS else t + 1), "new_id", [1, 2], [7, 2]),
        (lambda k, t: (2 if t == 0 and k >= CROSS else 9 if t == 1 and k >= CROSS else t + 1), "exchanged", [1, 2], [2, 9]),
        (lambda k, t: (None if t == 1 and k < CROSS else t + 1), "unmatched", [1, None], [1, 2]),
    ],
    ids=["kept", "exchanged", "new id", "half exchange", "untracked before"],
)
def test_each_crossing_is_judged_by_the_ids_before_and_after(ids_of, outcome, before, after):
    r = identity_exchanges(*clip(ids_of))
    (c,) = r["per_crossing"]
    assert (c["outcome"], c["before"], c["after"]) == (outcome, before, after)
    assert r["crossings"] == 1
    assert r["exchanges"] == int(outcome == "exchanged")
    assert r["new_ids"] == int(outcome == "new_id")


def test_a_short_wobble_does_not_outvote_the_window():
    # ids swap for 3 frames after the crossing, then come back: the window's majority keeps them
    r = identity_exchanges(*clip(lambda k, t: (2 - t if t < 2 and CROSS <= k < CROSS + 3 else t + 1)))
    assert r["per_crossing"][0]["outcome"] == "kept"
    assert (r["exchanges"], r["new_ids"]) == (0, 0)


def test_boxes_that_do_not_fit_and_other_classes_are_not_matched():
    records, gt, crossings, image_of = clip(lambda k, t: t + 1)
    for rec in records:
        for d in rec["detections"]:
            if d["tracker_id"] == 1:
                d["xyxy"] = [d["xyxy"][0] + 15, *d["xyxy"][1:3], d["xyxy"][3]]  # IoU < 0.5 with pedestrian 0
            if d["tracker_id"] == 3:
                d["class_name"] = "pedestrian"  # the car, called a pedestrian: matches nothing
    c = identity_exchanges(records, gt, crossings, image_of)["per_crossing"][0]
    assert (c["before"], c["after"], c["outcome"]) == ([None, 2], [None, 2], "unmatched")


def test_only_recorded_frames_in_the_window_count():
    records, gt, crossings, image_of = clip(lambda k, t: (2 - t if t < 2 and k >= CROSS + 5 else t + 1))
    assert identity_exchanges(records, gt, crossings, image_of, window=15)["exchanges"] == 1
    assert identity_exchanges(records, gt, crossings, image_of, window=5)["exchanges"] == 0  # swapped after the window
    kept = [r for r in records if r["index"] < CROSS + 5]  # the swapped frames were never recorded
    assert identity_exchanges(kept, gt, crossings, image_of)["per_crossing"][0]["outcome"] == "kept"
