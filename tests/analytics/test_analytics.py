"""Lines, zones and their events: directions, wobbles, dwell, coordinates, the event schema."""

import json

import numpy as np
import pytest

from pipeline.analytics import Analytics, Event, parse_shape, parse_shapes
from pipeline.config import ConfigError
from pipeline.types import Detections, Frame

NAMES = ("car", "pedestrian")
BLANK = np.zeros((400, 600, 3), np.uint8)


def run(shapes: list[str], track: list[list[tuple]], memory_s: float = 1.0, kinds=None) -> tuple[list[Event], Analytics]:
    """Feed per-frame [(tracker id, class, (cx, cy))] boxes of 20x20 around each centre."""
    a = Analytics(parse_shapes([s for s in shapes if s.count(",") == 3], [s for s in shapes if s.count(",") > 3]), NAMES, memory_s)
    events = []
    for k, objs in enumerate(track):
        xyxy = [[cx - 10, cy - 10, cx + 10, cy + 10] for _, _, (cx, cy) in objs]
        dets = Detections(np.array(xyxy, np.float32).reshape(-1, 4), [0.9] * len(objs), [c for _, c, _ in objs],
                          tracker_id=[t for t, _, _ in objs])
        events += a.update(Frame(BLANK, k, k / 30, 0.0), dets)
    return events, a


def test_a_line_drawn_left_to_right_counts_up_as_in_and_down_as_out():
    down = [[(1, 0, (300, 150 + 10 * k))] for k in range(12)]    # crosses y=200 going down
    up = [[(2, 1, (100, 250 - 10 * k))] for k in range(12)]      # crosses it going up
    events, a = run(["gate=0,0.5,1,0.5"], [d + u for d, u in zip(down, up)])
    got = sorted((e.tracker_id, e.class_name, e.event, e.name) for e in events)
    assert got == [(1, "car", "line_out", "gate"), (2, "pedestrian", "line_in", "gate")]
    assert a.counts() == {"gate": {"in": 1, "out": 1}}


def test_a_box_wobbling_on_the_line_counts_once():
    ys = [180, 190, 205, 195, 206, 194, 207, 215, 225, 235, 245]  # back and forth across y=200, then away
    events, _ = run(["gate=0,200,600,200"], [[(1, 0, (300, y))] for y in ys])
    assert [e.event for e in events] == ["line_out"]


def test_crossings_outside_the_segment_do_not_count_and_untracked_boxes_never_do():
    track = [[(1, 0, (500, 150 + 10 * k)), (-1, 0, (300, 150 + 10 * k))] for k in range(12)]
    events, _ = run(["short=100,200,400,200"], track)  # the tracked box passes beside the segment
    assert events == []


def test_zone_entries_exits_dwell_and_an_object_lost_inside():
    zone = "lot=200,100,400,100,400,300,200,300"
    path = [(1, 0, (150 + 10 * k, 200)) for k in range(31)]  # on the edge x=200 at frame 5 (inside), x=410 at frame 26
    lost = [(2, 1, (300, 200))] * 10  # seen inside for 10 frames, then never again
    track = [[p] + ([lost[k]] if k < len(lost) else []) for k, p in enumerate(path)]
    events, a = run([zone], track, memory_s=0.5)
    by = {(e.tracker_id, e.event): e for e in events}
    assert by[(1, "zone_enter")].frame == 7 and by[(1, "zone_exit")].frame == 28  # each confirmed on the 3rd sighting
    assert by[(1, "zone_exit")].dwell_s == pytest.approx(21 / 30, abs=1e-3)  # first seen inside (5) to first seen out (26)
    assert by[(2, "zone_enter")].frame == 2
    assert by[(2, "zone_exit")].dwell_s == pytest.approx(9 / 30, abs=1e-3)  # from first to last seen
    assert by[(2, "zone_exit")].frame > 9 + 15  # given up after the memory (0.5 s), not at once
    assert a.counts() == {"lot": {"inside": 0, "entries": 2, "exits": 2}}


def test_a_box_jittering_on_a_zone_edge_enters_once():
    xs = [195, 202, 198, 203, 205, 207, 210, 213, 216, 220]  # across the edge x=200 and back, then in
    events, a = run(["lot=200,100,400,100,400,300,200,300"], [[(1, 0, (x, 200))] for x in xs])
    assert [(e.event, e.frame) for e in events] == [("zone_enter", 5)]  # 203, 205, 207: the third in a row
    assert a.counts()["lot"] == {"inside": 1, "entries": 1, "exits": 0}


def test_a_crossing_made_while_unseen_counts_within_the_memory():
    """Seen above the line, missed for 10 frames (tracker id kept), then below: one crossing."""
    ys = [150, 160, 170, 180] + [None] * 10 + [230, 240, 250, 260]
    events, _ = run(["gate=0,200,600,200"], [[(7, 0, (300, y))] if y else [] for y in ys], memory_s=1.0)
    assert [(e.event, e.tracker_id) for e in events] == [("line_out", 7)]
    forgotten, _ = run(["gate=0,200,600,200"], [[(7, 0, (300, y))] if y else [] for y in ys], memory_s=0.2)
    assert forgotten == []  # unseen longer than the memory: a new object to the line


def test_shapes_outside_the_frame_are_warned_about():
    with pytest.warns(UserWarning, match="line 'far' lies outside the 600x400 frames"):
        run(["far=2000,100,3000,100"], [[(1, 0, (300, 100))]])


def test_fractions_scale_with_the_frame_and_pixels_do_not():
    assert parse_shape("line", "0,0.5,1,0.5", 0).in_pixels(600, 400).tolist() == [[0, 200], [600, 200]]
    assert parse_shape("line", "0,200,600,200", 0).in_pixels(1200, 800).tolist() == [[0, 200], [600, 200]]
    assert parse_shape("zone", "a=0,0,1,0,1,1", 0).name == "a"
    assert parse_shape("line", "0,0,1,1", 2).name == "line3"


@pytest.mark.parametrize("kind, text, words", [
    ("line", "0,0.5,1", "4 numbers"),
    ("line", "gate=0,a,1,0.5", "4 numbers"),
    ("line", "0,-1,5,5", "none negative"),
    ("line", "p=1,1,1,1", "the same"),
    ("zone", "0,0,1,0", "at least 6"),
    ("zone", "bad name=0,0,1,0,1,1", "a name is"),
    ("zone", "flat=0,100,640,100,1280,100", "enclose no area"),
])
def test_bad_shapes_are_one_line_errors(kind, text, words):
    with pytest.raises(ConfigError, match=words):
        parse_shape(kind, text, 0)


def test_two_shapes_with_one_name_are_refused():
    with pytest.raises(ConfigError, match="called 'a'"):
        parse_shapes(["a=0,0,1,1"], ["a=0,0,1,0,1,1"])


def test_event_schema_round_trips():
    e = Event(frame=12, pts=0.4, source_id=1, tracker_id=7, class_id=0, class_name="car", event="zone_exit", name="lot",
              dwell_s=1.25)
    line = e.to_json()
    assert json.loads(line) == {"frame": 12, "pts": 0.4, "source_id": 1, "tracker_id": 7, "class_id": 0, "class_name": "car",
                                "event": "zone_exit", "name": "lot", "dwell_s": 1.25}
    assert Event.from_json(line) == e
    crossing = Event(frame=1, pts=0.0, source_id=0, tracker_id=1, class_id=1, class_name="pedestrian", event="line_in", name="g")
    assert "dwell_s" not in json.loads(crossing.to_json())
    with pytest.raises(ValueError):
        Event.from_json(line.replace("zone_exit", "zone_left"))
