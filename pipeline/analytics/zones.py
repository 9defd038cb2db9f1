"""Polygon zones: who is inside (box centres, OpenCV's point-in-polygon test), entries, exits
and the time each object spent inside, with the lines' confirmation rule."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.analytics.lines import Confirmed


class ZoneCounter:
    def __init__(self, name: str, points: np.ndarray, memory_s: float):
        self.name, self.points = name, np.asarray(points, np.float64)
        self._contour = self.points.astype(np.float32).reshape(-1, 1, 2)
        self.confirmed = Confirmed(memory_s, initial=False)  # everyone starts outside
        self.entered: dict[int, tuple[float, int]] = {}  # tracker id -> (entered at, class id)
        self.entries = self.exits = 0

    def update(self, ids: np.ndarray, classes: np.ndarray, centres: np.ndarray, now: float) -> list[tuple]:
        found = []
        for tid, cid, (x, y) in zip(ids.tolist(), classes.tolist(), centres.tolist()):
            inside = cv2.pointPolygonTest(self._contour, (float(x), float(y)), False) >= 0
            if (changed := self.confirmed.see(tid, inside, now)) is None:
                continue
            if changed[0]:
                self.entered[tid] = (changed[1], cid)
                self.entries += 1
                found.append((tid, cid, "zone_enter", self.name, None))
            else:
                found.append(self._exit(tid, changed[1]))
        for tid, inside, last_seen in self.confirmed.forget(now):  # lost: inside until last seen
            if inside:
                found.append(self._exit(tid, last_seen))
        return found

    def _exit(self, tid: int, at: float) -> tuple:
        entered, cid = self.entered.pop(tid)
        self.exits += 1
        return (tid, cid, "zone_exit", self.name, max(at - entered, 0.0))

    def counts(self) -> dict:
        return {"inside": len(self.entered), "entries": self.entries, "exits": self.exits}
