"""Runtime: frame conservation, live latency and drops, failure propagation, queues."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from pipeline.runtime import END, FEEDER_NICE, Pipeline, StageError, StageQueue, Stopped
from pipeline.sinks import Sink
from pipeline.sources import open_source
from tests.conftest import FailingModel, SlowModel, make_clip, rss_mb


class RecordingSink(Sink):
    """Remembers what it got; optionally slow (a slow consumer)."""

    def __init__(self, delay: float = 0.0, needs_image: bool = False):
        self.delay, self.needs_image = delay, needs_image
        self.indices: list[int] = []
        self.images = 0
        self.closed_complete: bool | None = None

    def write(self, frame, detections, image):
        if self.delay:
            time.sleep(self.delay)
        self.indices.append(frame.index)
        self.images += image is not None

    def close(self, complete):
        self.closed_complete = complete


class FailingSink(RecordingSink):
    def write(self, frame, detections, image):
        if frame.index == 4:
            raise OSError("disk full (injected)")
        super().write(frame, detections, image)


class FailingSource:
    """A file-like source whose decoder breaks after a few frames."""

    live, fps, total, drops, uri = False, None, None, 0, "broken"

    def __init__(self, inner):
        self.inner = inner

    def frames(self):
        for i, f in enumerate(self.inner.frames()):
            if i == 5:
                raise RuntimeError("corrupt packet (injected)")
            yield f

    def describe(self):
        return {"uri": self.uri}


def rtpipe_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("rtpipe-") and t.is_alive()]


@pytest.mark.parametrize("batch", [1, 3])
def test_file_frames_conserved_in_order_with_slow_consumer(tmp_path, tiny_model, batch):
    clip = make_clip(tmp_path / "c.mp4", frames=40)
    sink = RecordingSink(delay=0.01, needs_image=True)
    progress: list[int] = []
    m = Pipeline(open_source(str(clip)), tiny_model, [sink], batch=batch, on_frame=progress.append).run()
    assert sink.indices == list(range(40))
    assert progress == list(range(1, 41))
    assert sink.images == 40
    assert m["frames_in"] == m["frames_out"] == 40
    assert m["dropped"] == 0
    assert sink.closed_complete is True
    assert m["stages"]["infer"]["count"] == -(-40 // batch)  # full batches, then the remainder


def test_max_frames_stops_early(tiny_model):
    sink = RecordingSink()
    m = Pipeline(open_source("synthetic:64x48@30?live=0&frames=50"), tiny_model, [sink], max_frames=7).run()
    assert sink.indices == list(range(7)) and m["frames_out"] == 7


def test_live_source_keeps_latency_bounded_and_counts_drops(tiny_model):
    model_s = 0.1  # a ~10 FPS model fed by a 60 FPS camera
    source = open_source("synthetic:640x360@60")
    sink = RecordingSink(needs_image=True)
    pipe = Pipeline(source, SlowModel(tiny_model, model_s), [sink])
    rss = {}
    threading.Timer(1.5, lambda: rss.setdefault("warm", rss_mb())).start()
    threading.Timer(4.0, pipe.drain).start()
    m = pipe.run(handle_sigint=False)
    rss["end"] = rss_mb()
    assert m["frames_out"] >= 20
    assert m["dropped"] > 0 and m["dropped"] + m["frames_out"] <= m["frames_in"] + source.drops
    assert m["e2e_latency"]["p95_ms"] < 3 * model_s * 1000, m["e2e_latency"]
    for name, q in m["queues"].items():
        assert q["max_depth"] <= q["capacity"], name
    assert rss["end"] - rss["warm"] < 30, rss  # MB; bounded queues, ring-buffer metrics
    assert sink.indices == sorted(sink.indices)


@pytest.mark.parametrize("step, stage", [("preprocess", "preprocess"), ("infer", "infer"), ("decode", "postprocess")])
def test_failing_model_step_stops_everything(tiny_model, step, stage):
    sink = RecordingSink()
    pipe = Pipeline(open_source("synthetic:320x240@30?live=0&frames=100000"), FailingModel(tiny_model, step), [sink])
    t0 = time.monotonic()
    with pytest.raises(StageError) as info:
        pipe.run(handle_sigint=False)
    assert time.monotonic() - t0 < 2.0
    assert info.value.stage == stage and f"stage '{stage}'" in str(info.value)
    assert "injected failure" in str(info.value)
    assert rtpipe_threads() == []
    assert sink.closed_complete is False


def test_failing_sink_and_source_name_their_stage(tiny_model):
    with pytest.raises(StageError, match="stage 'sink' failed: OSError: disk full"):
        Pipeline(open_source("synthetic:64x48@30?live=0&frames=50"), tiny_model, [FailingSink()]).run(handle_sigint=False)
    src = FailingSource(open_source("synthetic:64x48@30?live=0&frames=50"))
    with pytest.raises(StageError, match="stage 'grab' failed: RuntimeError: corrupt packet"):
        Pipeline(src, tiny_model, [RecordingSink()]).run(handle_sigint=False)
    assert rtpipe_threads() == []


def test_failure_while_live_stages_block(tiny_model):
    """A dead consumer must not leave the grab thread blocked on a full queue."""
    pipe = Pipeline(open_source("synthetic:320x240@120"), FailingModel(tiny_model, "decode", at_call=2), [RecordingSink(0.05)])
    t0 = time.monotonic()
    with pytest.raises(StageError):
        pipe.run(handle_sigint=False)
    assert time.monotonic() - t0 < 2.0
    assert rtpipe_threads() == []


def test_abort_closes_outputs_incomplete(tiny_model):
    sink = RecordingSink(delay=0.01)
    pipe = Pipeline(open_source("synthetic:64x48@30?live=0&frames=100000"), tiny_model, [sink])
    threading.Timer(0.5, pipe.abort).start()
    m = pipe.run(handle_sigint=False)
    assert m["aborted"] and sink.closed_complete is False
    assert rtpipe_threads() == []


def test_drain_finishes_frames_in_flight(tiny_model):
    sink = RecordingSink(delay=0.005)
    pipe = Pipeline(open_source("synthetic:64x48@30?live=0&frames=100000"), tiny_model, [sink])
    threading.Timer(0.5, pipe.drain).start()
    m = pipe.run(handle_sigint=False)
    assert m["interrupted"] and not m["aborted"] and sink.closed_complete is True
    assert m["frames_in"] == m["frames_out"] == len(sink.indices) > 0
    assert sink.indices == list(range(len(sink.indices)))


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


def test_pipeline_rejects_bad_batch(tiny_model):
    with pytest.raises(ValueError):
        Pipeline(open_source("synthetic:64x48@30"), tiny_model, batch=0)


def test_metrics_shape(tiny_model):
    m = Pipeline(open_source("synthetic:64x48@30?live=0&frames=10"), tiny_model, [RecordingSink()]).run(handle_sigint=False)
    assert set(m["stages"]) == {"grab", "preprocess", "infer", "postprocess", "overlay", "sink"}
    for s in m["stages"].values():
        if s["count"]:
            assert s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert m["fps"] == pytest.approx(m["frames_out"] / m["wall_s"], rel=1e-2)
    assert m["model"]["names"] == list(tiny_model.metadata.names)
    assert np.isfinite(m["e2e_latency"]["p99_ms"])


def test_live_batches_fill_within_the_deadline_and_stay_bounded(tiny_model):
    model_s = 0.05
    pipe = Pipeline(open_source("synthetic:160x120@200"), SlowModel(tiny_model, model_s), [RecordingSink()],
                    batch=4, max_latency_ms=100)
    threading.Timer(2.0, pipe.drain).start()
    m = pipe.run(handle_sigint=False)
    calls = m["stages"]["infer"]["count"]
    assert m["frames_out"] > 1.5 * calls  # frames were batched together
    assert m["queues"]["infer"]["capacity"] == 4
    # a frame waits at most one model call (the one running) before its own, which starts by its deadline
    assert m["e2e_latency"]["p95_ms"] < 100 + 3 * model_s * 1000


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread niceness is Linux-only")
def test_the_feeding_stages_yield_to_the_model_and_the_outputs(tiny_model):
    seen = {}

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    class Recording(SlowModel):
        def preprocess(self, image):
            seen["preprocess"] = niceness()
            return super().preprocess(image)

        def infer(self, batch):
            seen["infer"] = niceness()
            return super().infer(batch)

    class NiceSink(Sink):
        def write(self, frame, detections, image):
            seen["sink"] = niceness()

    base = niceness()
    Pipeline(open_source("synthetic:160x120@30?live=0&frames=3"), Recording(tiny_model, 0.0), [NiceSink()]).run(handle_sigint=False)
    assert seen == {"preprocess": min(base + FEEDER_NICE, 19), "infer": base, "sink": base}
    assert niceness() == base  # the caller's thread is untouched
