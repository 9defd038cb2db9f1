"""The crossings clip: deterministic, valid ground truth at any shape, true crossings that swap, and hiding."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipeline.demo.clip import coco_annotations
from pipeline.demo.crossings import CrossingScene, true_crossings, write_crossing_clip
from pipeline.demo.scenes import CLASSES

CATEGORIES = {k + 1: name for k, name in enumerate(CLASSES)}
FRAMES = 300
SIZES = {"16:9": (320, 180), "4:3": (240, 180), "portrait": (180, 320)}


@pytest.fixture(scope="module", params=list(SIZES), ids=list(SIZES))
def rendered(request):
    """300 frames of seed 1 at a small size of each shape -> (size, annotations, crossings, the hider's id)."""
    w, h = SIZES[request.param]
    annotations = []
    scene = CrossingScene(1, w, h, FRAMES)
    for i, r in enumerate(scene.frames(FRAMES)):
        annotations += coco_annotations(r, i + 1, len(annotations) + 1)
    return (w, h), annotations, true_crossings(annotations, {i + 1: i for i in range(FRAMES)}, CATEGORIES), scene.hider


def tracks(annotations) -> dict[int, dict[int, list[float]]]:
    """track id -> {frame: xyxy}"""
    out: dict[int, dict[int, list[float]]] = {}
    for a in annotations:
        x, y, w, h = a["bbox"]
        out.setdefault(a["track_id"], {})[a["image_id"] - 1] = [x, y, x + w, y + h]
    return out


def test_the_same_seed_gives_the_same_pixels():
    a = [r.image for r in CrossingScene(4, 160, 96, 30).frames(30)]
    b = [r.image for r in CrossingScene(4, 160, 96, 30).frames(30)]
    c = [r.image for r in CrossingScene(5, 160, 96, 30).frames(30)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_ground_truth_is_valid_at_every_shape(rendered):
    (w, h), annotations, _, _ = rendered
    assert annotations
    for a in annotations:
        x, y, bw, bh = a["bbox"]
        assert 0 <= x and 0 <= y and bw > 0 and bh > 0 and x + bw <= w and y + bh <= h
        assert a["area"] <= bw * bh
    per_frame: dict[int, list[int]] = {}
    category: dict[int, int] = {}
    for a in annotations:
        per_frame.setdefault(a["image_id"], []).append(a["track_id"])
        assert category.setdefault(a["track_id"], a["category_id"]) == a["category_id"]  # one class per track
    assert all(len(ids) == len(set(ids)) for ids in per_frame.values())  # one instance per track and frame
    seen = {CATEGORIES[c] for c in category.values()}
    assert {"car", "pedestrian", "cyclist"} <= seen
    assert not any(a["iscrowd"] for a in annotations) or any(not a["iscrowd"] for a in annotations)


def test_there_are_crossings_and_each_pair_truly_swaps(rendered):
    _, annotations, crossings, _ = rendered
    assert len(crossings) >= 3
    by_track = tracks(annotations)
    category = {a["track_id"]: CATEGORIES[a["category_id"]] for a in annotations}
    for c in crossings:
        a, b = (by_track[i] for i in c["ids"])
        assert category[c["ids"][0]] == category[c["ids"][1]] == c["class"]
        common = sorted(set(a) & set(b))
        before = [f for f in common if c["frame"] - 30 <= f < c["frame"]]
        after = [f for f in common if c["frame"] <= f < c["frame"] + 30]
        assert before and after

        def side(f, a=a, b=b):
            return np.sign(a[f][0] + a[f][2] - b[f][0] - b[f][2])

        assert side(before[0]) == -side(after[-1]) != 0  # the x order at the ends of the passage is reversed
        assert side(c["frame"]) == side(after[-1])


def test_an_object_is_hidden_for_a_while_and_comes_back_with_its_id(rendered):
    _, annotations, _, hider = rendered
    frames = sorted(tracks(annotations)[hider])  # the walker scripted to pass behind the pillar
    hidden = [(k, frames[k + 1] - frames[k] - 1) for k in range(len(frames) - 1) if frames[k + 1] - frames[k] > 1]
    # hidden for 5-25 frames, seen for at least 10 frames before and after
    assert any(5 <= gap <= 25 and k >= 10 and len(frames) - k > 10 for k, gap in hidden)


def test_true_crossings_follow_the_rule():
    def ann(frame, tid, x, w=20, cat=2):
        return {"image_id": frame + 1, "track_id": tid, "category_id": cat, "bbox": [x, 10, w, 40]}

    frames = {k + 1: k for k in range(40)}
    passing = [ann(k, 1, 10 + 5 * k) for k in range(40)] + [ann(k, 2, 200 - 5 * k) for k in range(40)]
    (c,) = true_crossings(passing, frames, CATEGORIES)
    assert c == {"frame": 20, "ids": [1, 2], "class": "pedestrian"}  # centres level at 19 (no order), reversed from 20
    other_class = [ann(k, 1, 10 + 5 * k) for k in range(40)] + [ann(k, 2, 200 - 5 * k, cat=1) for k in range(40)]
    assert true_crossings(other_class, frames, CATEGORIES) == []
    apart = [ann(k, 1, 10 + 5 * k) for k in range(40)] + [ann(k, 2, 200 - 5 * k) for k in range(40) if not 10 <= k < 45]
    assert true_crossings(apart, frames, CATEGORIES) == []  # never seen together near the flip: no crossing
    hidden = [ann(k, 1, 10 + 5 * k) for k in range(40)] + [ann(k, 2, 200 - 5 * k) for k in range(40) if not 19 <= k < 22]
    assert [c["frame"] for c in true_crossings(hidden, frames, CATEGORIES)] == [22]  # flipped while one was hidden
    back = [ann(k, 1, 10 + 5 * k if k < 20 else 105 - (k - 19)) for k in range(40)] + [ann(k, 2, 110) for k in range(40)]
    assert true_crossings(back, frames, CATEGORIES) == []  # reached the other's centre and turned back


def test_write_crossing_clip_writes_the_video_the_ground_truth_and_the_crossings(tmp_path):
    video, gt_path = write_crossing_clip(tmp_path / "out", seed=2, frames=12, size=(160, 96))
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12
    gt = json.loads(gt_path.read_text())
    assert [im["frame_index"] for im in gt["images"]] == list(range(12))
    assert [c["name"] for c in gt["categories"]] == list(CLASSES)
    assert all({"track_id", "iscrowd", "segmentation", "bbox", "area"} <= set(a) for a in gt["annotations"])
    crossings = json.loads((tmp_path / "out" / "crossings.json").read_text())
    assert set(crossings) == {"crossings"}
    assert (tmp_path / "out" / "ground_truth_mot.txt").exists()
