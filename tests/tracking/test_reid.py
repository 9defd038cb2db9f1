"""Appearance re-identification over a tracker (pipeline.tracking.reid): exchanges undone,
tracks taken off objects they moved onto, hidden objects given their id back."""

import numpy as np
import pytest

from pipeline.config import ConfigError
from pipeline.tracking import make_tracker
from pipeline.tracking.reid import AppearanceTracker, ColourLayout, make_embedder
from pipeline.types import Detections

RED, BLUE, GREEN = (40, 40, 200), (200, 60, 40), (40, 180, 40)  # BGR


class Scripted:
    """A motion tracker that gives, per frame, the ids it is told to (its mistakes included)."""

    name, memory_s, settings = "scripted", 1.0, {}

    def __init__(self, ids_per_frame):
        self.ids = iter(ids_per_frame)

    def update(self, detections, pts, image=None):
        return Detections(detections.xyxy, detections.confidence, detections.class_id, tracker_id=np.array(next(self.ids), np.int64))


def frame(objects, size=(480, 640)):
    """A grey picture with each (box, colour) drawn; the boxes and their Detections."""
    img = np.full((*size, 3), 90, np.uint8)
    for (x1, y1, x2, y2), colour in objects:
        img[y1:y2, x1:x2] = colour
    xyxy = [b for b, _ in objects]
    return img, Detections(np.array(xyxy, np.float32).reshape(-1, 4), [0.9] * len(xyxy), [0] * len(xyxy))


def run(tracker, scenes):
    out = []
    for k, objects in enumerate(scenes):
        img, dets = frame(objects)
        out.append(tracker.update(dets, k / 30, img).tracker_id.tolist())
    return out


def test_the_colour_layout_is_a_unit_vector_that_tells_colours_apart():
    img, dets = frame([((10, 10, 50, 90), RED), ((100, 10, 140, 90), RED), ((200, 10, 240, 90), BLUE)])
    e = ColourLayout().embed(img, dets.xyxy)
    assert e.shape == (3, 96) and np.allclose(np.linalg.norm(e, axis=1), 1)
    assert e[0] @ e[1] > 0.99 and e[0] @ e[2] < 0.5


def test_an_exchange_at_a_crossing_is_undone():
    """Red walks right, blue walks left; they overlap on frames 10-13 and the motion tracker
    leaves with its ids exchanged: red keeps its id all the same."""
    scenes, inner = [], []
    for k in range(24):
        r, b = 100 + 10 * k, 330 - 10 * k
        scenes.append([((r, 100, r + 40, 180), RED), ((b, 100, b + 40, 180), BLUE)])
        inner.append([1, 2] if k < 12 else [2, 1])
    ids = run(AppearanceTracker(Scripted(inner), ColourLayout()), scenes)
    assert ids[0] == [1, 2]
    assert all(row == [1, 2] for row in ids[14:]), ids  # from the first frame both stand clear


def test_twins_are_left_as_the_motion_tracker_has_them():
    """Two objects that look the same: appearance cannot tell them apart, so whatever the
    motion tracker decided at the crossing stands (no swap on noise)."""
    scenes, inner = [], []
    for k in range(24):
        r, b = 100 + 10 * k, 330 - 10 * k
        scenes.append([((r, 100, r + 40, 180), RED), ((b, 100, b + 40, 180), RED)])
        inner.append([1, 2] if k < 12 else [2, 1])
    ids = run(AppearanceTracker(Scripted(inner), ColourLayout()), scenes)
    assert all(row == [2, 1] for row in ids[12:]), ids


def test_a_track_that_moved_onto_another_object_is_taken_off_and_the_hidden_one_gets_its_id_back():
    """Red is tracked (inner id 1) until it hides; the motion tracker then puts id 1 on green,
    which appears nearby. Green must not get red's id; red, coming back under a new inner id,
    gets its own id again."""
    scenes, inner = [], []
    for k in range(8):
        scenes.append([((100 + 2 * k, 100, 140 + 2 * k, 180), RED)])
        inner.append([1])
    for _ in range(8, 12):
        scenes.append([((150, 100, 190, 180), GREEN)])
        inner.append([1])
    for _ in range(12, 16):
        scenes.append([((150, 100, 190, 180), GREEN), ((110, 200, 150, 280), RED)])
        inner.append([1, 7])
    ids = run(AppearanceTracker(Scripted(inner), ColourLayout()), scenes)
    red = ids[0][0]
    assert all(row == [red] for row in ids[:8])
    assert all(row[0] != red for row in ids[8:])  # green never carries red's id
    assert all(row[1] == red for row in ids[12:])  # red is red again
    assert len({row[0] for row in ids[8:]}) == 1  # and green keeps one id


def test_a_new_object_that_looks_like_a_lost_one_far_away_gets_a_new_id():
    scenes = [[((100, 100, 140, 180), RED)]] * 5 + [[((560, 380, 600, 460), RED)]] * 3
    ids = run(AppearanceTracker(Scripted([[1]] * 5 + [[2]] * 3), ColourLayout()), scenes)
    assert ids[-1][0] != ids[0][0]


def test_ids_are_never_reused_and_unconfirmed_detections_stay_without_one():
    scenes = [[((100, 100, 140, 180), RED), ((300, 100, 340, 180), BLUE)]] * 3
    ids = run(AppearanceTracker(Scripted([[-1, -1], [1, -1], [3, 2]]), ColourLayout()), scenes)
    assert ids[0] == [-1, -1] and ids[1][1] == -1
    assert ids[2][0] != ids[2][1]


def test_reid_runs_over_the_real_trackers_and_keeps_order():
    for name in ("bytetrack", "botsort"):
        tracker = make_tracker(name, {}, 30, reid="hist")
        assert tracker.settings["reid"] == "hist"
        scenes = [[((100 + 4 * k, 100, 140 + 4 * k, 180), RED), ((400, 100, 440, 180), BLUE)] for k in range(6)]
        ids = run(tracker, scenes)
        assert ids[-1][0] > 0 and ids[-1][1] > 0 and ids[-1][0] != ids[-1][1]


def test_an_unknown_spec_is_a_config_error():
    with pytest.raises(ConfigError, match="choose one of hist"):
        make_embedder("resnet")
