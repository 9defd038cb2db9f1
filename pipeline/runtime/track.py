"""The track stage: per source, a tracker and the lines and zones that count what it follows.

Runs in the postprocess thread, right after the detections are made (one thread: each
source's frames reach its tracker in order, whatever the batch size). Times itself as the
``track`` stage.
"""

from __future__ import annotations

from collections import Counter

from pipeline.analytics import Analytics, Shape, totals
from pipeline.tracking import make_tracker


class TrackStage:
    """``tracker`` by name with its ``settings``; ``shapes`` (lines and zones) for every source."""

    def __init__(self, tracker: str, settings: dict, shapes: list[Shape], names, sources):
        self.tracker, self.settings, self.shapes = tracker, dict(settings), shapes
        self._trackers = [make_tracker(tracker, settings, None if s.fps is None else float(s.fps)) for s in sources]
        self._analytics = [Analytics(shapes, names, t.memory_s) for t in self._trackers]
        self._events = [Counter() for _ in sources]
        self._last_id = [0 for _ in sources]

    def apply(self, item) -> None:
        """Fill ``item.detections.tracker_id``, ``item.events`` and ``item.counts``."""
        sid = item.frame.source_id
        item.detections = dets = self._trackers[sid].update(item.detections, item.frame.pts, item.frame.image)
        if len(dets):
            self._last_id[sid] = max(self._last_id[sid], int(dets.tracker_id.max()))
        item.events = self._analytics[sid].update(item.frame, dets)
        item.counts = self._analytics[sid].counts()
        for e in item.events:
            self._events[sid][(e.name, e.event, e.class_name)] += 1

    def summary(self) -> dict:
        """For the metrics: the tracker, the tracks started per source, and the events counted
        per line/zone, event and class (summed over the sources, and per source)."""
        return {"tracker": self.tracker, "settings": {**getattr(self._trackers[0], "settings", {})},
                "tracks": self._last_id, "counts": totals(self._events),
                "per_source": [totals([c]) for c in self._events] if len(self._events) > 1 else None,
                "shapes": [{"kind": s.kind, "name": s.name, "points": [list(p) for p in s.points]} for s in self.shapes]}
