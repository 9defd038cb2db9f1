"""Tracker score thresholds that follow the detector's scores (pipeline.tracking.thresholds)."""

import numpy as np
import pytest

from pipeline.tracking import make_tracker
from pipeline.tracking.thresholds import REFERENCE, SETTLE, ScoreScale
from pipeline.types import Detections

TUNED = {"high_conf_det_threshold": 0.5, "track_activation_threshold": 0.7}


def demo_like_scores(rng, n):
    """A detector like the demo model: true objects 0.8-0.95, false positives 0.25-0.5 (a quarter)."""
    true = rng.uniform(0.8, 0.95, n)
    false = rng.uniform(0.25, 0.5, n)
    return np.where(rng.random(n) < 0.75, true, false)


def fed(scale, scores, per_frame=10):
    out = {}
    for k in range(0, len(scores), per_frame):
        out = scale.update(scores[k:k + per_frame]) or out
    return out


def test_the_tuned_thresholds_hold_until_enough_scores_were_seen():
    scale = ScoreScale(TUNED)
    assert scale.update(np.full(SETTLE - 1, 0.3)) == {}
    assert scale.thresholds() == TUNED
    assert scale.update(np.full(1, 0.3)) != {}


def test_a_detector_at_the_reference_level_gets_the_tuned_thresholds():
    scale = ScoreScale(TUNED)
    got = fed(scale, np.full(400, REFERENCE))
    assert got == pytest.approx(TUNED)


@pytest.mark.parametrize("gamma", [1.0, 2.0, 3.0, 0.5])
def test_scores_raised_to_a_power_give_thresholds_raised_to_that_power(gamma):
    """A detector scoring the same objects as another, but every score s as s ** gamma, gets
    the other's thresholds ** gamma: the same detections pass them (scores that stay >= 0.25)."""
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.65, 0.95, 3000)
    base, other = ScoreScale(TUNED), ScoreScale(TUNED)
    a, b = fed(base, scores), fed(other, scores ** gamma)
    for key in TUNED:
        assert b[key] == pytest.approx(min(0.95, a[key] ** gamma), rel=1e-4)


def test_a_detector_whose_objects_score_03_to_06_starts_tracks_for_them():
    """At the demo's fixed thresholds (0.5 / 0.7) these objects would never get an id."""
    rng = np.random.default_rng(1)
    scale = ScoreScale(TUNED)
    got = fed(scale, rng.uniform(0.3, 0.6, 1000))
    assert got["track_activation_threshold"] < 0.3 and got["high_conf_det_threshold"] < 0.3


def low_scoring_frames(frames=40):
    rng = np.random.default_rng(2)
    for k in range(frames):
        xyxy = [[100 + 20 * i + 2 * k, 100 + 50 * i, 140 + 20 * i + 2 * k, 140 + 50 * i] for i in range(8)]
        yield k / 30, Detections(xyxy, rng.uniform(0.3, 0.5, 8), [0] * 8)


@pytest.mark.parametrize("name", ["bytetrack", "botsort"])
def test_a_tracker_follows_a_low_scoring_detector_unless_its_thresholds_were_given(name):
    followed = make_tracker(name, {}, 30)
    pinned = make_tracker(name, {"track_activation_threshold": 0.7, "high_conf_det_threshold": 0.5}, 30)
    for pts, d in low_scoring_frames():
        a, b = followed.update(d, pts), pinned.update(d, pts)
    assert (a.tracker_id > 0).all()  # every object is tracked once the thresholds moved
    assert (b.tracker_id <= 0).all()  # pinned at the demo's: none of them starts a track
    assert followed.settings["track_activation_threshold"] < 0.3
    assert pinned.settings["track_activation_threshold"] == 0.7


def test_a_low_conf_run_does_not_drag_the_thresholds_down():
    """At --conf 0.001 most scores are noise; the level is taken from 0.25 up, so the demo-like
    detector keeps about the tuned thresholds (and never below the floor)."""
    rng = np.random.default_rng(3)
    noise = rng.uniform(0.001, 0.2, 30_000)
    scores = np.concatenate([demo_like_scores(rng, 3000), noise])
    rng.shuffle(scores)
    got = fed(ScoreScale(TUNED), scores, per_frame=300)
    assert got == pytest.approx(fed(ScoreScale(TUNED), demo_like_scores(np.random.default_rng(3), 3000)), abs=0.05)
    only_noise = fed(ScoreScale(TUNED), noise, per_frame=300)
    assert only_noise == {}  # no score from 0.25 up: nothing to move them by


def test_nan_scores_are_ignored_and_thresholds_keep_to_their_bounds():
    scale = ScoreScale(TUNED)
    got = scale.update(np.r_[np.full(SETTLE, 0.26), np.nan, np.inf])
    assert all(0.1 <= v <= 0.95 for v in got.values()) and got["high_conf_det_threshold"] == 0.1
