"""Bounded queues between stage threads: stop-aware waits, drop-oldest for live sources, depth statistics."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

END = object()  # end of stream, passed down the stages in order
WAIT = 0.05  # the longest any wait lasts before the stop event is checked again


@dataclass(frozen=True)
class SourceEnd:
    """End of one source's frames (the infer stage ends when every source has ended)."""

    source_id: int


class Stopped(Exception):
    """Raised inside a stage when the run is being stopped; the stage exits quietly."""


def is_marker(item) -> bool:
    """END and SourceEnd: they carry no frame and are never dropped."""
    return item is END or isinstance(item, SourceEnd)


class StageQueue:
    """A bounded FIFO between two stages, with stop-aware waits and depth/drop statistics.

    drop_oldest=False: ``put`` waits while full (lossless). drop_oldest=True: ``put`` never
    waits for a frame; it drops the oldest frame instead and counts it (end markers are never
    dropped, and wait for room like any item on a lossless queue).
    """

    def __init__(self, capacity: int, stop: threading.Event, drop_oldest: bool = False):
        if capacity < 1:
            raise ValueError("queue capacity must be >= 1")
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self._stop = stop
        self._items: deque = deque()
        self._cond = threading.Condition()
        self.drops = 0
        self.max_depth = 0
        self._depth_sum = 0
        self._puts = 0

    def put(self, item) -> None:
        with self._cond:
            while len(self._items) >= self.capacity:
                if self.drop_oldest and not is_marker(item) and self._drop_oldest_frame():
                    continue
                if self._stop.is_set():
                    raise Stopped
                self._cond.wait(WAIT)
            self._items.append(item)
            depth = len(self._items)
            self.max_depth = max(self.max_depth, depth)
            self._depth_sum += depth
            self._puts += 1
            self._cond.notify_all()

    def _drop_oldest_frame(self) -> bool:
        """Drop the oldest item that is not an end marker (markers are never dropped)."""
        for k, queued in enumerate(self._items):
            if not is_marker(queued):
                del self._items[k]
                self.drops += 1
                return True
        return False

    def get(self, timeout: float | None = None):
        """The oldest item; None if ``timeout`` (seconds) passes first. Raises Stopped on stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._stop.is_set():
                    raise Stopped
                wait = WAIT
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        return None
                self._cond.wait(wait)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def stats(self) -> dict:
        return {
            "capacity": self.capacity, "drop_oldest": self.drop_oldest, "drops": self.drops,
            "max_depth": self.max_depth, "mean_depth": round(self._depth_sum / self._puts, 3) if self._puts else 0.0,
        }


class QueueGroup:
    """Several queues reported as one (each source's own input queue)."""

    def __init__(self, queues: list[StageQueue]):
        self.queues = queues

    def stats(self) -> dict:
        parts = [q.stats() for q in self.queues]
        puts = [q._puts for q in self.queues]
        mean = sum(p["mean_depth"] * n for p, n in zip(parts, puts)) / max(sum(puts), 1)
        return {"capacity": sum(p["capacity"] for p in parts), "drop_oldest": any(p["drop_oldest"] for p in parts),
                "drops": sum(p["drops"] for p in parts), "max_depth": max(p["max_depth"] for p in parts), "mean_depth": round(mean, 3)}
