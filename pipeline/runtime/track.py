"""The track stage: per source, a tracker, the lines and zones that count what it follows and,
with a ground calibration, each track's speed (``pipeline.analytics.speed``).

Runs in the postprocess thread, right after the detections are made (one thread: each
source's frames reach its tracker in order, whatever the batch size). Times itself as the
``track`` stage.

The tracker's clock: a frame's pts, kept going forwards: a frame whose pts is not after the
previous one's (a stream that restarted its clock, a repeated stamp) is taken as one frame
period after it, and the frames that follow keep that offset. Sources whose pts are not times
(``Source.timed``: image folders) are taken as 1/30 s a frame.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from pipeline.analytics import Analytics, Shape, totals
from pipeline.analytics.speed import Calibration, SpeedEstimator
from pipeline.tracking import make_tracker

NOMINAL_FPS = 30.0  # for sources that do not say their rate


class TrackStage:
    """``tracker`` by name with its ``settings``; ``shapes`` (lines and zones) for every source;
    ``calibration``: the ground plane every source sees, for speeds (None: no speeds); ``reid``:
    an appearance embedder's spec for re-identification (None: motion only); ``smooth_boxes``:
    tracked boxes are the tracks' smoothed states."""

    def __init__(self, tracker: str, settings: dict, shapes: list[Shape], names, sources,
                 calibration: Calibration | None = None, reid: str | None = None, smooth_boxes: bool = False):
        self.tracker, self.shapes, self.calibration, self.smooth_boxes = tracker, shapes, calibration, smooth_boxes
        self._speeds: list[SpeedEstimator | None] = [None for _ in sources]  # made at a source's first frame (its size)
        fps = [None if s.fps is None else float(s.fps) for s in sources]
        self._trackers = [make_tracker(tracker, settings, f, reid, smooth_boxes) for f in fps]
        self._analytics = [Analytics(shapes, names, t.memory_s) for t in self._trackers]
        self._timed = [s.timed for s in sources]
        self._period = [1.0 / (f or NOMINAL_FPS) for f in fps]
        self._clock: list[float | None] = [None for _ in sources]  # the last frame's time
        self._offset = [0.0 for _ in sources]  # added to pts since the clock last went back
        self._events = [Counter() for _ in sources]
        self._last_id = [0 for _ in sources]

    def _now(self, frame) -> float:
        sid = frame.source_id
        now = (frame.pts if self._timed[sid] else frame.index / NOMINAL_FPS) + self._offset[sid]
        last = self._clock[sid]
        if last is not None and now <= last:
            self._offset[sid] += last + self._period[sid] - now
            now = last + self._period[sid]
        self._clock[sid] = now
        return now

    def apply(self, item) -> None:
        """Fill ``item.detections.tracker_id`` (and ``speed_kmh``), ``item.events`` and ``item.counts``."""
        sid = item.frame.source_id
        now = self._now(item.frame)
        item.detections = dets = self._trackers[sid].update(item.detections, now, item.frame.image)
        if self.calibration is not None:
            item.detections = dets = self._speed(item.frame, dets, now)
        if len(dets):
            self._last_id[sid] = max(self._last_id[sid], int(dets.tracker_id.max()))
        analytics, events = self._analytics[sid], self._events[sid]  # (set_shapes may replace both meanwhile)
        item.events = analytics.update(item.frame, dets, now)
        item.counts = analytics.counts()
        for e in item.events:
            events[(e.name, e.event, e.class_name)] += 1

    def _speed(self, frame, dets, now: float):
        """The detections with ``speed_kmh`` (the homography is made for the source's first frame's size)."""
        est = self._speeds[frame.source_id]
        if est is None:
            est = self._speeds[frame.source_id] = self.calibration.estimator(frame.width, frame.height)
        return replace(dets, speed_kmh=est.update(dets.tracker_id, dets.xyxy, now))

    def set_shapes(self, shapes: list[Shape]) -> None:
        """New lines and zones for every source, from any thread: counting starts again from zero
        at the next frame (the trackers keep their tracks)."""
        analytics = [Analytics(shapes, a.names, t.memory_s) for a, t in zip(self._analytics, self._trackers)]
        self.shapes, self._analytics, self._events = shapes, analytics, [Counter() for _ in analytics]

    def counts(self, sid: int = 0) -> dict:
        """Source ``sid``'s counts now (``Analytics.counts``)."""
        return self._analytics[sid].counts()

    def summary(self) -> dict:
        """For the metrics: the tracker and its settings (source 0's, and each source's when there
        are several: the score thresholds follow each source's scores), the tracks started per source, the
        events counted per line/zone, event and class (summed over the sources, and per source),
        the objects inside each zone at the end (summed), the shapes and the ground calibration."""
        inside = Counter()
        for a in self._analytics:
            for name, c in a.counts().items():
                inside[name] += c.get("inside", 0)
        settings = [{**getattr(t, "settings", {})} for t in self._trackers]  # each source's thresholds follow its own scores
        return {"tracker": self.tracker, "settings": settings[0], "smooth_boxes": self.smooth_boxes,
                "settings_per_source": settings if len(settings) > 1 else None,
                "tracks": self._last_id, "counts": totals(self._events, self.shapes),
                "inside_at_end": {s.name: inside[s.name] for s in self.shapes if s.kind == "zone"},
                "per_source": [totals([c], self.shapes) for c in self._events] if len(self._events) > 1 else None,
                "shapes": [{"kind": s.kind, "name": s.name, "points": [list(p) for p in s.points]} for s in self.shapes],
                "calibration": None if self.calibration is None else self.calibration.to_dict()}
