"""Tracking ground truth of generated clips: MOT rows match the COCO file; true line crossings
equal what the track stage counts on the objects' exact boxes."""

import json

import numpy as np

from pipeline.analytics import parse_shapes
from pipeline.demo.clip import DEMO_LINES, write_clip
from pipeline.demo.scenes import CLASSES, Scene
from pipeline.demo.truth import CrossingCounter
from pipeline.runtime.track import TrackStage
from pipeline.types import Detections, Frame
from tests.fakes import Frames


def test_mot_rows_are_the_coco_instances_with_their_identities(tmp_path):
    _, gt_path = write_clip(tmp_path, seed=3, frames=12, size=(320, 180))
    gt = json.loads(gt_path.read_text())
    rows = [line.split(",") for line in (tmp_path / "ground_truth_mot.txt").read_text().splitlines()]
    assert len(rows) == len(gt["annotations"]) > 0
    for row, a in zip(rows, gt["annotations"]):
        frame, tid, x, y, w, h, consider, cls = (int(v) for v in row[:8])
        assert (frame, tid, cls) == (a["image_id"], a["track_id"] + 1, a["category_id"])
        assert [x, y, w, h] == a["bbox"] and consider == 1 - a["iscrowd"]
        assert 0 < float(row[8]) <= 1
    truth = json.loads((tmp_path / "crossings.json").read_text())
    assert [line["spec"] for line in truth["lines"]] == DEMO_LINES
    for event, per in truth["counts"]["gate"].items():  # the totals are the listed crossings
        assert per["all"] == sum(e["event"] == event for e in truth["events"])


def test_the_track_stage_counts_the_true_crossings_of_the_demo_clip():
    """The demo clip (seed 7, 300 frames), its objects' exact boxes through the tracker and the
    line counter: the counts per class and direction are the generator's crossings."""
    shapes = parse_shapes(DEMO_LINES, [])
    truth = CrossingCounter(shapes, 1280, 720)
    stage = TrackStage("bytetrack", {}, shapes, CLASSES, [Frames([])])
    for k, r in enumerate(Scene(7).frames(300)):
        truth.add(r, k)
        seen = [i for i in r.instances if not i.crowd]
        dets = Detections(np.array([i.box for i in seen], np.float32).reshape(-1, 4), [0.9] * len(seen),
                          [i.category for i in seen])
        stage.apply(type("Item", (), {"frame": Frame(r.image, k, k / 30, 0.0), "detections": dets})())
    expected = truth.totals()["gate"]
    assert expected["line_in"]["all"] + expected["line_out"]["all"] >= 5
    counted = stage.summary()["counts"]["gate"]
    assert {ev: counted.get(ev, {"all": 0}) for ev in expected} == expected


def test_a_wobble_on_the_line_is_one_true_crossing():
    """An object seen above, on, below, on, below the line: one crossing, once confirmed."""
    counter = CrossingCounter(parse_shapes(["g=0,100,200,100"], []), 200, 200)
    inst = type("Instance", (), {"id": 0, "category": 0, "crowd": False})
    events = []
    for k, y in enumerate([80, 90, 105, 95, 106, 108, 110, 112]):
        one = inst()
        one.box = (90, y - 5, 110, y + 5)
        counter.add(type("Rendered", (), {"instances": [one]})(), k)
        events = counter.events
    assert [(e["frame"], e["event"]) for e in events] == [(6, "line_out")]
