"""Track ids on labels, trails, and lines and zones with their counts on the drawn frame."""

import numpy as np

from pipeline.analytics import parse_shapes
from pipeline.overlay.host import LabelAnnotator
from pipeline.overlay.tracks import CountsAnnotator, TrailAnnotator
from pipeline.types import Detections, Frame


def item(k, dets, counts=None, sid=0):
    return type("Item", (), {"frame": Frame(np.zeros((200, 300, 3), np.uint8), k, k / 30, 0.0, sid), "detections": dets,
                             "counts": counts})()


def test_a_trail_follows_the_track_and_is_forgotten_when_it_is_gone():
    trails = TrailAnnotator(length=10)
    for k in range(8):
        image = np.zeros((200, 300, 3), np.uint8)
        trails.annotate(image, item(k, Detections([[20 + 20 * k, 90, 40 + 20 * k, 110]], [0.9], [1], tracker_id=[5])))
    row = image[95:106].any(axis=(0, 2))
    assert row[30:170].all() and not row[200:].any()  # a line from the first centre (30) to the last (170)
    image = np.zeros((200, 300, 3), np.uint8)
    trails.annotate(image, item(30, Detections.empty()))
    assert not image.any() and not trails._paths
    other = np.zeros((200, 300, 3), np.uint8)
    trails.annotate(other, item(0, Detections([[0, 0, 10, 10]], [0.9], [1], tracker_id=[-1]), sid=1))
    assert not other.any()  # no trail for an unconfirmed detection


def test_lines_and_zones_are_drawn_with_their_counts():
    shapes = parse_shapes(["gate=0,0.5,1,0.5"], ["lot=0.1,0.1,0.4,0.1,0.4,0.3"])
    image = np.zeros((200, 300, 3), np.uint8)
    CountsAnnotator(shapes).annotate(image, item(0, Detections.empty(), {"gate": {"in": 2, "out": 1},
                                                                         "lot": {"inside": 1, "entries": 3, "exits": 2}}))
    assert (image[100] == CountsAnnotator.LINE).all(axis=1).sum() > 200  # the line across the middle
    assert (image == CountsAnnotator.ZONE).all(axis=2).sum() > 100


def test_labels_carry_the_track_id(monkeypatch):
    calls = []
    monkeypatch.setattr("pipeline.overlay.host.cv2.putText", lambda img, text, *a, **k: calls.append(text))
    dets = Detections([[10, 50, 60, 90], [100, 50, 160, 90]], [0.9, 0.8], [0, 1], tracker_id=[7, -1])
    LabelAnnotator(["car", "person"]).annotate(np.zeros((200, 300, 3), np.uint8), dets)
    assert calls == ["#7 car 0.90", "person 0.80"]
