"""Trackers from Roboflow's ``trackers`` library (Apache-2.0), behind rtpipe's Tracker protocol.

- ``bytetrack``: ByteTrack. Two-stage IoU association (confident detections first, then the
  low-score ones keep occluded tracks alive), a Kalman motion model per track.
- ``botsort`` (the default): BoT-SORT. ByteTrack's association plus a centre-and-size Kalman state and a
  third stage for unconfirmed tracks; its camera-motion compensation is off by default here
  (``enable_cmc: 1`` turns it on; it then uses the frame, and costs ~3 ms per frame).

Both are time-aware: each update is given the frame's time. Why this library (over
supervision's ByteTrack and boxmot), and how the defaults here were measured on generated
clips with benchmarks/tracking_accuracy.py: benchmarks/README.md, "Tracking".
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pipeline.config import ConfigError
from pipeline.tracking.thresholds import SCORE_THRESHOLDS, ScoreScale
from pipeline.types import Detections


class LibraryTracker:
    """One source's tracker from the library: ``library`` names its class, ``DEFAULTS`` the
    settings a preset may set (their defaults here), ``MINIMUM`` the whole-number ones."""

    name = ""
    library = ""
    DEFAULTS: dict = {}
    MINIMUM = {"lost_track_buffer": 0, "minimum_consecutive_frames": 1}  # the whole-number settings and their least values

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        for key, value in settings.items():
            if key not in cls.DEFAULTS:
                raise ConfigError(f"track_settings: unknown key '{key}' for {cls.name}: known keys {', '.join(cls.DEFAULTS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ConfigError(f"track_settings: '{key}' must be a number >= 0 (got {value!r})")
            if key.startswith("enable_") and value not in (0, 1):
                raise ConfigError(f"track_settings: '{key}' is 0 (off) or 1 (on) (got {value!r})")
            if key in cls.MINIMUM and (int(value) != value or value < cls.MINIMUM[key]):
                raise ConfigError(f"track_settings: '{key}' must be a whole number >= {cls.MINIMUM[key]} (got {value!r})")
            if (key.endswith(("threshold", "_assoc")) or key.startswith("enable_")) and value > 1:
                raise ConfigError(f"track_settings: '{key}' is in 0..1 (got {value!r})")

    def __init__(self, fps: float | None = None, smooth_boxes: bool = False, **settings):
        from pipeline.tracking import require_trackers

        require_trackers()
        import trackers

        cls = getattr(trackers, self.library)
        self.settings = {**self.DEFAULTS, **settings}
        self.library_settings = {k: int(v) if k in self.MINIMUM else bool(v) if k.startswith("enable_") else v
                                 for k, v in self.settings.items()}  # as the library's class takes them
        self.uses_image = bool(self.library_settings.get("enable_cmc", False))
        self.fps = float(fps) if fps else 30.0
        self._tracker = cls(frame_rate=self.fps, **self.library_settings)
        self.memory_s = self.settings["lost_track_buffer"] / 30.0
        follow = {k: v for k, v in self.DEFAULTS.items() if k in SCORE_THRESHOLDS and k not in settings}
        self._scale = ScoreScale(follow) if follow else None  # thresholds the user did not set follow the detector
        self.smooth_boxes = smooth_boxes

    def update(self, detections: Detections, pts: float, image: np.ndarray | None = None) -> Detections:
        import supervision as sv

        n = len(detections)
        if self._scale is not None:
            for key, value in self._scale.update(detections.confidence).items():
                setattr(self._tracker, key, value)
                self.settings[key] = round(value, 4)  # what the run's metrics report: the thresholds in effect
        given = sv.Detections(xyxy=detections.xyxy.astype(np.float64), confidence=detections.confidence,
                              class_id=detections.class_id, data={"row": np.arange(n)})
        out = self._tracker.update(given, frame=image if self.uses_image else None, timestamp=pts)
        ids = np.full(n, -1, np.int64)
        if len(out):
            ids[out.data["row"]] = np.where(out.tracker_id >= 0, out.tracker_id + 1, -1)  # the library counts from 0
        xyxy = self._smoothed(detections.xyxy, ids, image) if self.smooth_boxes else detections.xyxy
        return replace(detections, xyxy=xyxy, tracker_id=ids)

    def _smoothed(self, xyxy: np.ndarray, ids: np.ndarray, image: np.ndarray | None) -> np.ndarray:
        """The boxes of tracked detections replaced by their track's state (the Kalman filter's
        estimate after this frame's update), kept inside the frame; others as detected. Masks
        keep their own placement."""
        state = {t.tracker_id + 1: t.get_state_bbox() for t in self._tracker.tracks if t.tracker_id >= 0}
        out = xyxy.copy()
        for row in np.flatnonzero(ids > 0):
            box = state.get(int(ids[row]))
            if box is not None and np.isfinite(box).all():
                x1, y1, x2, y2 = (float(v) for v in box)
                out[row] = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        if image is not None:
            h, w = image.shape[:2]
            np.clip(out, 0, [w, h, w, h], out=out)
        return out


class ByteTrack(LibraryTracker):
    name, library = "bytetrack", "ByteTrackTracker"
    # Where they differ from the library's: IoU gate 0.2 (not 0.1) and split 0.6 / start 0.6 (not
    # 0.6 / 0.7), measured on demo clips with benchmarks/tracking_accuracy.py. Split 0.5 / start
    # 0.7 won on clips 1-3 once, lost to Ultralytics' ByteTrack on IDF1 on clips 4-7 (0.669 vs
    # 0.680); 0.6 / 0.6 gives HOTA 0.656 / IDF1 0.691 there and 0.681 / 0.742 on 1-3. The two
    # score thresholds are the demo model's; other detectors get them moved to their own scores
    # (pipeline.tracking.thresholds).
    DEFAULTS = {"minimum_iou_threshold": 0.2, "track_activation_threshold": 0.6, "high_conf_det_threshold": 0.6,
                "lost_track_buffer": 30, "minimum_consecutive_frames": 2}


class BoTSort(LibraryTracker):
    name, library = "botsort", "BoTSORTTracker"
    # The library's, but tracks start from detections scoring 0.6 (not 0.7): MOTA +0.02 on clips
    # 1-3 and 4-6, IDF1 about the same (0.793 / 0.783 mean). Camera-motion compensation off:
    # IDF1 0.758 with it against 0.791 without on clips 1-3 (the camera drives forward).
    DEFAULTS = {"minimum_iou_threshold_first_assoc": 0.2, "minimum_iou_threshold_second_assoc": 0.5,
                "minimum_iou_threshold_unconfirmed_assoc": 0.3, "track_activation_threshold": 0.6,
                "high_conf_det_threshold": 0.6, "lost_track_buffer": 30, "minimum_consecutive_frames": 2, "enable_cmc": 0}
