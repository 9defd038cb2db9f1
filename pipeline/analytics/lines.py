"""Line crossings of tracked box centres, and the confirmation rule lines and zones share."""

from __future__ import annotations

import numpy as np

# A change of side counts once the centre has been seen on the new side this many times in a
# row: a box whose centre wobbles on a boundary (a partly hidden object, a detector's jitter)
# would count in, out, in otherwise. The event comes that many frames after the change.
CONFIRM_FRAMES = 3


class Confirmed:
    """Which side of a boundary each object is on, changing only when confirmed.

    ``see(key, side, now)`` records an observation; it returns ``(new side, when)`` when the
    object has now been seen ``CONFIRM_FRAMES`` times in a row on the other side (``when``: the
    first of those observations), else None. An object's first observation sets its side
    (``initial`` None) or starts it at ``initial``. Objects unseen for ``memory_s`` are given
    back by ``forget(now)`` and forgotten.
    """

    def __init__(self, memory_s: float, initial: bool | None = None):
        self.memory_s, self.initial = memory_s, initial
        self.state: dict = {}  # key -> [side, observations on the other side, first of them, last seen]

    def see(self, key, side: bool, now: float) -> tuple[bool, float] | None:
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = [side if self.initial is None else self.initial, 0, now, now]
        st[3] = now
        if side == st[0]:
            st[1] = 0
            return None
        if st[1] == 0:
            st[2] = now
        st[1] += 1
        if st[1] < CONFIRM_FRAMES:
            return None
        st[0], st[1] = side, 0
        return side, st[2]

    def forget(self, now: float) -> list[tuple]:
        """(key, side, last seen) of every object unseen for longer than the memory, now forgotten."""
        gone = [(k, st[0], st[3]) for k, st in self.state.items() if now - st[3] > self.memory_s]
        for k, _, _ in gone:
            del self.state[k]
        return gone


def sides(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the segment ``points`` (2x2) and (N, 2) centres: (within the segment's span, on its right)."""
    a, b = points
    d = b - a
    rel = centres - a
    along = rel @ d / float(d @ d)
    return (along >= 0) & (along <= 1), d[0] * rel[:, 1] - d[1] * rel[:, 0] > 0


class LineCounter:
    """Counts tracked objects whose box centre crosses the segment, per direction (see
    ``pipeline.analytics``); observations outside the segment's span are skipped."""

    def __init__(self, name: str, points: np.ndarray, memory_s: float):
        self.name, self.points = name, np.asarray(points, np.float64)
        self.confirmed = Confirmed(memory_s)
        self.n_in = self.n_out = 0

    def update(self, ids: np.ndarray, classes: np.ndarray, centres: np.ndarray, now: float) -> list[tuple]:
        found = []
        within, right = sides(self.points, centres)
        for tid, cid, w, r in zip(ids.tolist(), classes.tolist(), within.tolist(), right.tolist()):
            if w and (changed := self.confirmed.see(tid, r, now)) is not None:
                out = changed[0]
                self.n_out, self.n_in = self.n_out + out, self.n_in + (not out)
                found.append((tid, cid, "line_out" if out else "line_in", self.name, None))
        self.confirmed.forget(now)
        return found

    def counts(self) -> dict:
        return {"in": self.n_in, "out": self.n_out}
