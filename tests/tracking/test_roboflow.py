"""ByteTrack behind the Tracker protocol: stable ids, order and masks kept, drops, gaps, clocks."""

import numpy as np
import pytest

from pipeline.config import ConfigError
from pipeline.tracking import make_tracker
from pipeline.types import BoxMasks, Detections


def crossing(frames: int = 60, step: int = 1):
    """Two cars driving towards each other along one road, passing with their boxes half
    overlapping (frames 25-35), plus a parked one; every ``step``-th frame, as (pts, Detections)."""
    for k in range(0, frames, step):
        a = 100 + 8 * k
        b = 580 - 8 * k
        xyxy = [[a, 100, a + 60, 140], [b, 115, b + 60, 155], [300, 300, 340, 330]]
        yield k / 30, Detections(xyxy, [0.9, 0.85, 0.8], [0, 0, 1])


def ids_by_object(tracker, frames) -> list[tuple[int, int, int]]:
    return [tuple(tracker.update(d, pts).tracker_id.tolist()) for pts, d in frames]


def test_ids_stay_with_their_objects_through_a_crossing():
    ids = ids_by_object(make_tracker("bytetrack", {}, 30), crossing())
    first_confirmed = next(row for row in ids if min(row) > 0)
    assert len(set(first_confirmed)) == 3
    assert all(row == first_confirmed for row in ids[ids.index(first_confirmed):])  # no swap as they pass
    assert ids[0] == (-1, -1, -1)  # a track is confirmed on its second frame


def test_order_and_masks_stay_with_their_boxes():
    rng = np.random.default_rng(0)
    tracker = make_tracker("bytetrack", {}, 30)
    for k in range(5):
        xyxy = np.array([[10 + k, 10, 50 + k, 40], [200, 100 + k, 230, 160 + k], [400, 50, 460, 90]], np.float32)
        crops = [rng.random((int(b[3]) - int(b[1]), int(b[2]) - int(b[0]))) > 0.5 for b in xyxy]
        masks = BoxMasks(tuple(crops), xyxy.astype(np.int32), (480, 640))
        dets = Detections(xyxy, [0.9, 0.8, 0.95], [0, 1, 2], masks)
        out = tracker.update(dets, k / 30)
        np.testing.assert_array_equal(out.xyxy, dets.xyxy)
        np.testing.assert_array_equal(out.class_id, dets.class_id)
        assert all(np.array_equal(a, b) for a, b in zip(out.mask.crops, crops))
    assert sorted(out.tracker_id.tolist()) == [1, 2, 3]


def test_dropped_frames_keep_ids():
    """A live source that drops 3 of every 4 frames: the motion model predicts over the time passed."""
    ids = ids_by_object(make_tracker("bytetrack", {}, 30), crossing(frames=60, step=4))
    assert all(min(row) > 0 for row in ids[1:])
    assert len(set(ids[1:])) == 1


def test_a_gap_longer_than_the_memory_gives_new_ids_never_reused():
    tracker = make_tracker("bytetrack", {"lost_track_buffer": 15}, 30)  # half a second
    assert tracker.memory_s == pytest.approx(0.5)
    boxes = Detections([[100, 100, 160, 140], [300, 100, 360, 140]], [0.9, 0.9], [0, 0])
    before = [tracker.update(boxes, k / 30).tracker_id.tolist() for k in range(5)][-1]
    short = tracker.update(boxes, 4 / 30 + 0.4).tracker_id.tolist()  # 0.4 s without frames: within memory
    assert short == before
    after = [tracker.update(boxes, 4 / 30 + 0.4 + 1.0 + k / 30).tracker_id.tolist() for k in range(3)][-1]  # a 1 s reconnect gap
    assert min(after) > max(before)  # new objects to the tracker, with ids it never gave before


def test_empty_frames_and_ids_per_instance():
    a, b = make_tracker("bytetrack", {}, 30), make_tracker("bytetrack", {}, 30)
    assert len(a.update(Detections.empty(), 0.0)) == 0
    boxes = Detections([[0, 0, 10, 10]], [0.9], [0])
    for k in range(3):
        a.update(boxes, (k + 1) / 30)
        got = b.update(boxes, k / 30)
    assert got.tracker_id.tolist() == [1]  # each tracker numbers its own tracks from 1


@pytest.mark.parametrize("settings, words", [
    ({"min_iou": 0.3}, "unknown key 'min_iou'"),
    ({"minimum_iou_threshold": 1.5}, "0..1"),
    ({"lost_track_buffer": 2.5}, "whole number"),
    ({"minimum_consecutive_frames": 0}, ">= 1"),
    ({"track_activation_threshold": "high"}, "a number"),
    ({"lost_track_buffer": float("inf")}, "a number"),
    ({"high_conf_det_threshold": float("nan")}, "a number"),
])
def test_bad_settings_are_one_line_errors(settings, words):
    with pytest.raises(ConfigError, match=words):
        make_tracker("bytetrack", settings, 30)


def test_camera_motion_compensation_is_on_or_off():
    with pytest.raises(ConfigError, match="0 .off. or 1 .on."):
        make_tracker("botsort", {"enable_cmc": 0.5}, 30)


def test_unknown_tracker_names_the_known_ones():
    with pytest.raises(ConfigError, match="choose one of bytetrack"):
        make_tracker("sort", {}, 30)


@pytest.mark.parametrize("name", ["bytetrack", "botsort"])
def test_every_tracker_keeps_ids_through_the_crossing(name):
    ids = ids_by_object(make_tracker(name, {}, 30), crossing())
    confirmed = [row for row in ids if min(row) > 0]
    assert len(confirmed) >= len(ids) - 2 and len(set(confirmed)) == 1


@pytest.mark.parametrize("cmc", [0, 1])
def test_botsort_looks_at_the_frame_only_with_camera_motion_compensation(cmc, monkeypatch):
    from trackers.utils.cmc import CMC

    seen = []
    estimate = CMC.estimate
    monkeypatch.setattr(CMC, "estimate", lambda self, frame, *a, **k: seen.append(frame.shape) or estimate(self, frame, *a, **k))
    tracker = make_tracker("botsort", {"enable_cmc": cmc}, 30)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 320, 3), np.uint8)
    boxes = Detections([[100, 100, 160, 140]], [0.9], [0])
    ids = [tracker.update(boxes, k / 30, np.roll(image, k, axis=1)).tracker_id.tolist() for k in range(4)]
    assert ids[-1] == [1]
    assert len(seen) == (4 if cmc else 0) and (not seen or seen[0] == (240, 320, 3))


@pytest.mark.parametrize("name", ["bytetrack", "botsort"])
def test_smoothed_boxes_follow_the_true_path_closer_than_the_detected_ones(name):
    """An object moving steadily, its detected box jittering by 3 px: with smooth_boxes the
    tracked box is the track's state, nearer the truth; a detection no track holds keeps its box."""
    rng = np.random.default_rng(0)
    plain, smooth = make_tracker(name, {}, 30), make_tracker(name, {}, 30, smooth_boxes=True)
    raw_err, smooth_err = [], []
    for k in range(60):
        truth = np.array([100 + 4 * k, 100, 160 + 4 * k, 180], np.float32)
        seen = truth + rng.normal(0, 3, 4).astype(np.float32)
        dets = Detections([seen, [500, 400, 540, 440]], [0.9, 0.9], [0, 1])
        a, b = plain.update(dets, k / 30), smooth.update(dets, k / 30)
        np.testing.assert_array_equal(a.xyxy, dets.xyxy)
        if k == 0:
            np.testing.assert_array_equal(b.xyxy, dets.xyxy)  # not tracked yet: as detected
        if k >= 10:
            assert b.tracker_id.tolist() == a.tracker_id.tolist()
            raw_err.append(np.abs(a.xyxy[0] - truth).mean())
            smooth_err.append(np.abs(b.xyxy[0] - truth).mean())
            assert (b.xyxy[:, :2] <= b.xyxy[:, 2:]).all()
    assert np.mean(smooth_err) < 0.8 * np.mean(raw_err)


def test_smoothing_is_not_a_track_setting():
    with pytest.raises(ConfigError, match="unknown key 'smooth_boxes'"):
        make_tracker("bytetrack", {"smooth_boxes": 1}, 30)
