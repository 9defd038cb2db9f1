"""Stage queues: blocking puts that give way to a stop, drop-oldest for live sources, end markers never dropped."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.runtime.queues import END, SourceEnd, StageQueue, Stopped


class TestStageQueue:
    def test_blocking_put_waits_then_raises_on_stop(self):
        stop = threading.Event()
        q = StageQueue(1, stop)
        q.put(1)
        threading.Timer(0.2, stop.set).start()
        t0 = time.monotonic()
        with pytest.raises(Stopped):
            q.put(2)
        assert 0.15 < time.monotonic() - t0 < 1.0

    def test_drop_oldest_keeps_newest_and_counts(self):
        q = StageQueue(2, threading.Event(), drop_oldest=True)
        for i in range(5):
            q.put(i)
        assert [q.get(), q.get()] == [3, 4]
        assert q.stats()["drops"] == 3 and q.stats()["max_depth"] == 2

    def test_end_marker_is_never_dropped(self):
        """END waits for room instead of dropping a frame or being dropped."""
        q = StageQueue(1, threading.Event(), drop_oldest=True)
        q.put(1)
        q.put(2)
        t = threading.Thread(target=q.put, args=(END,))
        t.start()
        time.sleep(0.1)
        assert t.is_alive()  # waiting for room
        assert q.get() == 2
        t.join(1.0)
        assert q.get(timeout=1.0) is END
        assert q.stats()["drops"] == 1

    def test_a_source_end_is_never_dropped_by_later_frames(self):
        """Another source's frames drop the oldest frame, never a source's end marker."""
        q = StageQueue(2, threading.Event(), drop_oldest=True)
        q.put(SourceEnd(1))
        for i in range(5):
            q.put(i)
        assert q.get() == SourceEnd(1) and q.get() == 4 and q.stats()["drops"] == 4

    def test_get_timeout_returns_none(self):
        q = StageQueue(1, threading.Event())
        t0 = time.monotonic()
        assert q.get(timeout=0.1) is None
        assert time.monotonic() - t0 < 0.5

    def test_get_raises_on_stop(self):
        stop = threading.Event()
        q = StageQueue(1, stop)
        threading.Timer(0.1, stop.set).start()
        with pytest.raises(Stopped):
            q.get()
