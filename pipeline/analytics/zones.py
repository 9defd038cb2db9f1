"""Polygon zones: who is inside (supervision's PolygonZone tests the box centres), entries,
exits and the time each object spent inside."""

from __future__ import annotations

import numpy as np


class ZoneCounter:
    def __init__(self, name: str, points: np.ndarray, memory_s: float):
        import supervision as sv

        self.name, self.points, self.memory_s = name, points, memory_s
        self.zone = sv.PolygonZone(np.round(points).astype(np.int64), triggering_anchors=(sv.Position.CENTER,))
        self.inside: dict[int, list] = {}  # tracker id -> [entered pts, class id, last seen inside pts]
        self.entries = self.exits = 0

    def update(self, detections, pts: float) -> list[tuple]:
        found = []
        is_in = self.zone.trigger(detections) if len(detections) else np.zeros(0, bool)
        for tid, cid, now_in in zip(detections.tracker_id.tolist(), detections.class_id.tolist(), is_in.tolist()):
            state = self.inside.get(tid)
            if now_in and state is None:
                self.inside[tid] = [pts, cid, pts]
                self.entries += 1
                found.append((tid, cid, "zone_enter", self.name, None))
            elif now_in:
                state[2] = pts
            elif state is not None:
                found.append(self._exit(tid, pts))
        for tid in [t for t, (_, _, seen) in self.inside.items() if pts - seen > self.memory_s]:  # lost inside
            found.append(self._exit(tid, self.inside[tid][2]))
        return found

    def _exit(self, tid: int, at: float) -> tuple:
        entered, cid, _ = self.inside.pop(tid)
        self.exits += 1
        return (tid, cid, "zone_exit", self.name, max(at - entered, 0.0))

    def counts(self) -> dict:
        return {"inside": len(self.inside), "entries": self.entries, "exits": self.exits}
