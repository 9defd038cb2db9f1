"""Tracker score thresholds that follow the detector: tuned once, moved to each detector's scores.

A tracker's score thresholds (the high/low split of ByteTrack's two-stage association, the
score a detection needs to start a track) are tuned on one detector. Another detector scores
the same objects differently: one trained elsewhere may give its true objects 0.3-0.6, and at
the demo's thresholds (0.5 / 0.6-0.7) most of them would never start a track.

``ScoreScale`` moves the tuned thresholds to the detector at hand, from the scores it gives.
The detector's confident level is the 90th percentile of the scores the tracker was given
from ``BASIS`` up (its last ``WINDOW``; a run at a low ``--conf`` adds many scores of nothing,
which say nothing of that level); a threshold ``t`` tuned where that level was ``REFERENCE`` becomes
``level ** (log t / log REFERENCE)``: it keeps its place on a log scale between the confident
level and 1, so a detector whose scores are the demo's raised to any power gets the demo's
thresholds raised to the same power; never below ``FLOOR`` nor above ``CEILING``. Until
``SETTLE`` scores were seen the tuned values hold.
Thresholds given by the user (``track_settings``) are kept as given.

Measured with benchmarks/tracking_accuracy.py (``score_gamma``: the demo's scores raised to a
power, a detector calibrated lower): README "Tracking".

Limit: a scene with no objects for a long time gives the tracker only false positives; their
90th percentile is low, and so are the thresholds (false tracks start more easily). Pin the
thresholds in ``track_settings`` where that matters.
"""

from __future__ import annotations

import math

import numpy as np

SCORE_THRESHOLDS = ("high_conf_det_threshold", "track_activation_threshold")
REFERENCE = 0.9   # the demo model's 90th percentile of scores >= 0.25 on the clips its thresholds were tuned on
BASIS = 0.25      # the level is taken over scores from here up, as REFERENCE was (a low --conf adds only noise below)
FLOOR = 0.1       # a threshold never goes below this (Ultralytics' lowest tracking threshold)
LEVEL_QUANTILE = 90
WINDOW = 2000     # scores kept: the last ones the tracker was given
SETTLE = 200      # scores seen before the thresholds move
EVERY = 30        # frames between two estimates
CEILING = 0.95    # a threshold never goes above this


class ScoreScale:
    """The thresholds ``tuned`` ({name: value tuned at REFERENCE}) moved to the scores seen."""

    def __init__(self, tuned: dict[str, float]):
        self.tuned = dict(tuned)
        self.level: float | None = None  # the detector's confident level, once estimated
        self._scores = np.zeros(WINDOW, np.float32)
        self._seen = 0
        self._frames = 0

    def update(self, scores: np.ndarray) -> dict[str, float]:
        """Note a frame's detection scores; the thresholds when they change (else {})."""
        scores = np.asarray(scores, np.float32)
        scores = scores[np.isfinite(scores) & (scores >= BASIS)][:WINDOW]
        at = np.arange(self._seen, self._seen + len(scores)) % WINDOW
        self._scores[at] = scores
        self._seen += len(scores)
        self._frames += 1
        if self._seen < SETTLE or (self.level is not None and self._frames % EVERY):
            return {}
        self.level = float(np.percentile(self._scores[:min(self._seen, WINDOW)], LEVEL_QUANTILE))
        return self.thresholds()

    def thresholds(self) -> dict[str, float]:
        """The thresholds at the current level (the tuned ones before there is one)."""
        if self.level is None:
            return dict(self.tuned)
        level = min(max(self.level, 1e-3), 0.999)
        return {k: min(CEILING, max(FLOOR, level ** (math.log(t) / math.log(REFERENCE)))) for k, t in self.tuned.items()}
