"""Stage threads and bounded queues: grab -> preprocess -> infer -> postprocess -> overlay -> sinks.

- File-like sources: every queue blocks when full, so nothing is lost and order is kept.
- Live sources: the queues in front of the model keep only the newest frames (the oldest is
  dropped and counted), so latency stays bounded however slow the model is.
- Every wait is short and checks the stop event, so no thread stays blocked. A stage that
  raises stops every stage; ``run`` then raises StageError naming that stage.
- The stages that feed the model (grab, preprocess, postprocess: cheap, they only keep it
  busy) run at ``FEEDER_NICE`` (Linux, per thread): on a full CPU they fill idle time instead
  of preempting the model's threads or the output stages' encoders (2 cores: +3 % FPS for
  an engine-bound 1080p run, +5 % writing H.264; benchmarks/README.md).
- ``drain()`` (first Ctrl-C) stops the source and lets the frames in flight finish, so the
  outputs are finalised; ``abort()`` (second Ctrl-C) stops everything now.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.metrics import RunMetrics
from pipeline.models import Model
from pipeline.overlay import draw
from pipeline.sinks import Sink
from pipeline.sources import Source
from pipeline.types import Detections, Frame, LetterboxMeta

STAGES = ("grab", "preprocess", "infer", "postprocess", "overlay", "sink")  # in pipeline order
END = object()  # end of stream, passed down the stages in order
FEEDER_STAGES, FEEDER_NICE = ("grab", "preprocess", "postprocess"), 10
_WAIT = 0.05    # the longest any wait lasts before the stop event is checked again


class Stopped(Exception):
    """Raised inside a stage when the run is being stopped; the stage exits quietly."""


class StageError(RuntimeError):
    """A stage raised; ``stage`` names it and ``__cause__`` is the original error."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"stage '{stage}' failed: {error.__class__.__name__}: {error}")
        self.stage = stage
        self.error = error


class StageQueue:
    """A bounded FIFO between two stages, with stop-aware waits and depth/drop statistics.

    drop_oldest=False: ``put`` waits while full (lossless). drop_oldest=True: ``put`` never
    waits; it drops the oldest item instead and counts it.
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
                if self.drop_oldest and item is not END:
                    self._items.popleft()
                    self.drops += 1
                    continue
                if self._stop.is_set():
                    raise Stopped
                self._cond.wait(_WAIT)
            self._items.append(item)
            depth = len(self._items)
            self.max_depth = max(self.max_depth, depth)
            self._depth_sum += depth
            self._puts += 1
            self._cond.notify_all()

    def get(self, timeout: float | None = None):
        """The oldest item; None if ``timeout`` (seconds) passes first. Raises Stopped on stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._stop.is_set():
                    raise Stopped
                wait = _WAIT
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


@dataclass
class Item:
    """One frame on its way through the stages; each stage fills in its field."""

    frame: Frame
    tensor: np.ndarray | None = None
    meta: LetterboxMeta | None = None
    detections: Detections | None = None
    image: np.ndarray | None = None  # annotated picture, when a sink needs one


@dataclass
class Batch:
    items: list[Item]
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


class Pipeline:
    """Run a model on a source and write to sinks; ``run()`` returns the metrics dict.

    source: a Source. model: a loaded Model. sinks: where results go (may be empty).
    batch: frames per model call. batch_wait_ms: for live sources, how long the infer stage
    waits to fill a batch. max_frames: stop after this many frames. hud: draw FPS and latency
    on the annotated frames. on_frame: called from the sink thread after each frame is written
    with the number of frames out so far (progress bars).
    """

    def __init__(
        self,
        source: Source,
        model: Model,
        sinks: list[Sink] | tuple[Sink, ...] = (),
        *,
        batch: int = 1,
        batch_wait_ms: float = 10.0,
        max_frames: int | None = None,
        hud: bool = False,
        on_frame: Callable[[int], None] | None = None,
    ):
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self.source, self.model, self.sinks = source, model, list(sinks)
        self.batch, self.batch_wait = batch, batch_wait_ms / 1000
        self.max_frames, self.hud, self.on_frame = max_frames, hud, on_frame
        self.metrics = RunMetrics()
        self._stop = threading.Event()
        self._drain = threading.Event()
        self._aborted = False
        self._errors: list[StageError] = []
        self._threads: list[threading.Thread] = []
        live = source.live
        q = self.metrics.queues
        # Queues are named after the stage that reads them.
        q["preprocess"] = StageQueue(2 if live else 8, self._stop, drop_oldest=live)
        q["infer"] = StageQueue(batch if live else 2 * batch, self._stop, drop_oldest=live)
        q["postprocess"] = StageQueue(2, self._stop)
        q["overlay"] = StageQueue(4, self._stop)
        q["sink"] = StageQueue(4, self._stop)
        self._annotate = any(s.needs_image for s in self.sinks)

    # ---- control -------------------------------------------------------------------------

    def drain(self) -> None:
        """Stop taking frames; finish the ones in flight and finalise the outputs."""
        self._drain.set()
        self.source.interrupt()  # e.g. stop waiting to reconnect

    def abort(self) -> None:
        """Stop every stage now; outputs are closed as incomplete."""
        self._aborted = True
        self._stop.set()
        self.source.interrupt()

    # ---- stages --------------------------------------------------------------------------

    def _stage(self, name: str, body: Callable[[], None]) -> threading.Thread:
        def target():
            if name in FEEDER_STAGES and hasattr(os, "setpriority"):
                try:
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), FEEDER_NICE)  # this thread only (Linux)
                except OSError:
                    pass
            try:
                body()
            except Stopped:
                pass
            except BaseException as exc:  # noqa: BLE001 - any failure stops the run and is reported
                self._errors.append(StageError(name, exc))
                self._stop.set()

        t = threading.Thread(target=target, name=f"rtpipe-{name}", daemon=True)
        self._threads.append(t)
        return t

    def _grab(self) -> None:
        out, stats = self.metrics.queues["preprocess"], self.metrics.stage("grab")
        frames = self.source.frames()
        try:
            while not self._drain.is_set() and not self._stop.is_set():
                if self.max_frames is not None and self.metrics.frames_in >= self.max_frames:
                    break
                t0 = time.perf_counter()
                frame = next(frames, None)
                if frame is None:
                    break
                stats.add((time.perf_counter() - t0) * 1000)
                self.metrics.frames_in += 1
                out.put(Item(frame))
            out.put(END)
        finally:
            frames.close()
            self.metrics.source_drops = self.source.drops

    def _preprocess(self) -> None:
        inq, out, stats = self.metrics.queues["preprocess"], self.metrics.queues["infer"], self.metrics.stage("preprocess")
        while (item := inq.get()) is not END:
            t0 = time.perf_counter()
            item.tensor, item.meta = self.model.preprocess(item.frame.image)
            stats.add((time.perf_counter() - t0) * 1000)
            out.put(item)
        out.put(END)

    def _infer(self) -> None:
        inq, out, stats = self.metrics.queues["infer"], self.metrics.queues["postprocess"], self.metrics.stage("infer")
        ended = False
        while not ended:
            first = inq.get()
            if first is END:
                break
            items = [first]
            deadline = time.monotonic() + self.batch_wait
            while len(items) < self.batch:
                wait = max(deadline - time.monotonic(), 0) if self.source.live else None
                nxt = inq.get(timeout=wait)
                if nxt is None:
                    break
                if nxt is END:
                    ended = True
                    break
                items.append(nxt)
            t0 = time.perf_counter()
            batch = np.stack([it.tensor for it in items])
            outputs = self.model.infer(batch)
            stats.add((time.perf_counter() - t0) * 1000)
            for it in items:
                it.tensor = None  # the input is not needed past here
            out.put(Batch(items, outputs))
        out.put(END)

    def _postprocess(self) -> None:
        inq, out, stats = self.metrics.queues["postprocess"], self.metrics.queues["overlay"], self.metrics.stage("postprocess")
        while (batch := inq.get()) is not END:
            t0 = time.perf_counter()
            dets = self.model.decode(batch.outputs, [it.meta for it in batch.items])
            stats.add((time.perf_counter() - t0) * 1000)
            for it, d in zip(batch.items, dets):
                it.detections = d
                out.put(it)
        out.put(END)

    def _overlay(self) -> None:
        inq, out, stats = self.metrics.queues["overlay"], self.metrics.queues["sink"], self.metrics.stage("overlay")
        names = self.model.metadata.names
        while (item := inq.get()) is not END:
            if self._annotate:
                t0 = time.perf_counter()
                hud = None
                if self.hud:
                    hud = {"fps": self.metrics.recent_fps(), "latency_ms": self.metrics.e2e.last()}
                item.image = draw(item.frame.image, item.detections, names, hud=hud)
                stats.add((time.perf_counter() - t0) * 1000)
            self.metrics.to_overlay.add((time.monotonic() - item.frame.captured_at) * 1000)
            out.put(item)
        out.put(END)

    def _sink(self) -> None:
        inq, stats = self.metrics.queues["sink"], self.metrics.stage("sink")
        while (item := inq.get()) is not END:
            t0 = time.perf_counter()
            for s in self.sinks:
                s.write(item.frame, item.detections, item.image)
                if s.wants_stop:
                    self.drain()
            stats.add((time.perf_counter() - t0) * 1000)
            self.metrics.frame_out(item.frame.captured_at)
            if self.on_frame is not None:
                self.on_frame(self.metrics.frames_out)

    # ---- run -----------------------------------------------------------------------------

    def run(self, handle_sigint: bool = True) -> dict:
        """Run to the end of the source (or drain/abort); return the metrics dict.

        With ``handle_sigint`` (and when called from the main thread) the first SIGINT drains
        and the second aborts. Raises StageError if a stage failed; the sinks are then closed
        as incomplete (their partial files are kept under a ``.partial`` name).
        """
        bodies = list(zip(STAGES, (self._grab, self._preprocess, self._infer, self._postprocess, self._overlay, self._sink)))
        for name in STAGES:  # every stage appears in the metrics, in pipeline order
            self.metrics.stage(name)
        previous = None
        if handle_sigint and threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        self.metrics.started = time.monotonic()
        try:
            for name, body in bodies:
                self._stage(name, body).start()
            while any(t.is_alive() for t in self._threads):
                for t in self._threads:
                    t.join(_WAIT)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self._stop.set()
            for t in self._threads:
                t.join()
            self.metrics.ended = time.monotonic()
            complete = not self._errors and not self._aborted
            close_errors = self._close_sinks(complete)
        if self._errors:
            raise self._errors[0] from self._errors[0].error
        if close_errors:
            raise close_errors[0] from close_errors[0].error
        result = self.metrics.to_dict()
        result["interrupted"] = self._drain.is_set()
        result["aborted"] = self._aborted
        result["source"] = self.source.describe()
        result["model"] = self.model.metadata.to_dict()
        result["batch"] = self.batch
        return result

    def _on_sigint(self, signum, frame) -> None:
        if not self._drain.is_set():
            self.drain()
        else:
            self.abort()

    def _close_sinks(self, complete: bool) -> list[StageError]:
        errors = []
        for s in self.sinks:
            try:
                s.close(complete)
            except Exception as exc:  # noqa: BLE001 - report every sink that fails to finalise
                errors.append(StageError("sink", exc))
        return errors
