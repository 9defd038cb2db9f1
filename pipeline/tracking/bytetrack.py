"""ByteTrack, from Roboflow's ``trackers`` library (Apache-2.0): two-stage IoU association
(confident detections first, then the low-score ones keep occluded tracks alive), a Kalman
motion model per track, time-aware when given timestamps.

Chosen over supervision's ByteTrack (removed from supervision in 0.31; 3.3x slower per frame)
and boxmot (AGPL, needs torch; 4.8x slower): benchmarks/README.md, "Tracking".
"""

from __future__ import annotations

import inspect

import numpy as np

from pipeline.config import ConfigError
from pipeline.types import Detections

# Defaults that differ from the library's, measured on the demo's generated clips (tuning
# seeds, not the evaluation seed; benchmarks/README.md): a higher IoU gate stops ids swapping
# between neighbours in traffic; tracks start from detections a good detector gives.
DEFAULTS = {"minimum_iou_threshold": 0.3, "track_activation_threshold": 0.5, "high_conf_det_threshold": 0.5,
            "lost_track_buffer": 30, "minimum_consecutive_frames": 2}
SETTINGS = tuple(DEFAULTS)  # the keys a preset's track_settings may set


class ByteTrack:
    """One source's ByteTrack (see module docstring); ``settings`` are the library's names."""

    name = "bytetrack"

    @staticmethod
    def check_settings(settings: dict) -> None:
        for key, value in settings.items():
            if key not in SETTINGS:
                raise ConfigError(f"track_settings: unknown key '{key}' for bytetrack: known keys {', '.join(SETTINGS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"track_settings: '{key}' must be a number >= 0 (got {value!r})")
            if key in ("lost_track_buffer", "minimum_consecutive_frames") and (int(value) != value or value < (key != "lost_track_buffer")):
                raise ConfigError(f"track_settings: '{key}' must be a whole number{' >= 1' if key != 'lost_track_buffer' else ''} (got {value!r})")
            if key.endswith("threshold") and value > 1:
                raise ConfigError(f"track_settings: '{key}' is in 0..1 (got {value!r})")

    def __init__(self, fps: float | None = None, **settings):
        from trackers import ByteTrackTracker

        self.settings = {**DEFAULTS, **settings}
        known = inspect.signature(ByteTrackTracker).parameters
        assert all(k in known for k in self.settings), "trackers' ByteTrackTracker changed its settings"
        self.fps = float(fps) if fps else 30.0
        self._tracker = ByteTrackTracker(frame_rate=self.fps, **self.settings)
        self.memory_s = self.settings["lost_track_buffer"] / 30.0
        self._last_pts: float | None = None

    def update(self, detections: Detections, pts: float) -> Detections:
        import supervision as sv

        if self._last_pts is not None and pts < self._last_pts:  # a restarted clock: time goes on
            pts = self._last_pts + 1.0 / self.fps
        self._last_pts = pts
        n = len(detections)
        given = sv.Detections(xyxy=detections.xyxy.astype(np.float64), confidence=detections.confidence,
                              class_id=detections.class_id, data={"row": np.arange(n)})
        out = self._tracker.update(given, timestamp=pts)
        ids = np.full(n, -1, np.int64)
        if len(out):
            ids[out.data["row"]] = np.where(out.tracker_id >= 0, out.tracker_id + 1, -1)  # the library counts from 0
        return Detections(detections.xyxy, detections.confidence, detections.class_id, detections.mask, ids)
