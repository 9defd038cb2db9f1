"""Line crossings of tracked box centres, counted by supervision's LineZone."""

from __future__ import annotations

import numpy as np

# A crossing counts once the centre has been seen on the other side this many times in a row:
# a box whose centre wobbles on the line (a partly hidden object, a detector's jitter) would
# count in, out, in otherwise. The event comes that many frames after the crossing.
CONFIRM_FRAMES = 3


class LineCounter:
    def __init__(self, name: str, points: np.ndarray):
        import supervision as sv

        (x1, y1), (x2, y2) = points
        self.name = name
        self.zone = sv.LineZone(start=sv.Point(float(x1), float(y1)), end=sv.Point(float(x2), float(y2)),
                                triggering_anchors=(sv.Position.CENTER,), minimum_crossing_threshold=CONFIRM_FRAMES)
        self.points = points
        self.n_in = self.n_out = 0

    def update(self, detections, pts: float) -> list[tuple]:
        crossed_in, crossed_out = self.zone.trigger(detections)
        found = []
        for kind, hits in (("line_in", crossed_in), ("line_out", crossed_out)):
            for i in np.flatnonzero(hits):
                found.append((int(detections.tracker_id[i]), int(detections.class_id[i]), kind, self.name, None))
        self.n_in += int(crossed_in.sum())
        self.n_out += int(crossed_out.sum())
        return found

    def counts(self) -> dict:
        return {"in": self.n_in, "out": self.n_out}
