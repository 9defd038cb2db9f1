"""Stage threads and bounded queues: grab -> preprocess -> infer -> postprocess -> overlay -> sinks.

- File-like sources: every queue blocks when full, so nothing is lost and order is kept.
- Live sources: the queues in front of the model keep only the newest frames (the oldest is
  dropped and counted), so latency stays bounded however slow the model is.
- Several sources share one model: each has its own grab and preprocess threads and its own
  first queue (lossless or newest-only, as the source is); the infer stage batches frames
  from all of them and cuts a batch at the oldest frame's deadline (``max_latency_ms``), so
  a slow or reconnecting source never holds the others. A source that fails ends only itself.
- Every wait is short and checks the stop event, so no thread stays blocked. Any other stage
  that raises stops every stage; ``run`` then raises StageError naming that stage.
- The stages that feed the model (grab, preprocess, postprocess: cheap, they only keep it
  busy) run at ``FEEDER_NICE`` (Linux, per thread): on a full CPU they fill idle time instead
  of preempting the model's threads or the output stages' encoders (2 cores: +3 % FPS for
  an engine-bound 1080p run, +5 % writing H.264; benchmarks/README.md).
- ``drain()`` (first Ctrl-C, SIGTERM or SIGHUP) stops the sources and lets the frames in flight
  finish, so the outputs are finalised; ``abort()`` (a second such signal) stops everything now.
  A source whose read is still waiting ``READ_GRACE_S`` after either (a stalled stream, up to
  its read timeout) is not waited for: its reader thread ends by itself when the read returns.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

from pipeline.metrics import RunMetrics
from pipeline.models import Model
from pipeline.paths import Item, ModelPath, path_for
from pipeline.runtime.queues import END, WAIT, QueueGroup, SourceEnd, StageQueue, Stopped
from pipeline.runtime.signals import STOP_SIGNALS, StopSignals  # noqa: F401  (STOP_SIGNALS: the batch job's)
from pipeline.sinks import Sink
from pipeline.sources import Source

if TYPE_CHECKING:
    from pipeline.runtime.classify import CropClassifier

STAGES = ("grab", "preprocess", "infer", "postprocess", "overlay", "sink")  # in pipeline order
# (with tracking, a "track" stage follows postprocess in the metrics, with --classify-crops a "classify" one;
# both run in the postprocess thread)
FEEDER_STAGES, FEEDER_NICE = ("grab", "preprocess", "postprocess"), 10
# after a drain, how long a read that is still waiting (a stalled stream) is given before its
# source is left to end by itself: the frames already read are finalised without it
READ_GRACE_S = 0.5


class StageError(RuntimeError):
    """A stage raised; ``stage`` names it and ``__cause__`` is the original error. ``metrics``:
    the run's metrics dict up to the failure, when the run got that far."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"stage '{stage}' failed: {error.__class__.__name__}: {error}")
        self.stage = stage
        self.error = error
        self.metrics: dict | None = None


@dataclass
class Batch:
    items: list[Item]
    outputs: dict = field(default_factory=dict)


class SourceFailed(StageError):
    """A source failed; the others ran to their end. ``metrics`` is the run's metrics dict."""

    def __init__(self, failures: list[tuple[int, str, BaseException]], multi: bool, metrics: dict):
        sid, uri, error = failures[0]
        super().__init__("grab", error)
        if multi:
            others = "" if len(failures) == 1 else f" (and {len(failures) - 1} more source(s))"
            self.args = (f"stage 'grab' failed: source {sid} ({uri}): {error.__class__.__name__}: {error}{others}; "
                         "the other sources ran to their end",)
        self.failures, self.metrics = failures, metrics


class Pipeline:
    """Run a model on one or more sources and write to sinks; ``run()`` returns the metrics dict.

    sources: a Source, or several (one engine for all: frames from every source are batched
    into one model call). model: a loaded Model. sinks: a list of sinks that get every frame,
    or {source_id: [sinks]} for outputs per source (``Frame.source_id`` is the position in
    ``sources``). batch: frames per model call. max_latency_ms: a batch is cut, full or not,
    when its oldest frame has waited so long that the model could not finish it within this
    many ms of its capture (default: 100 when a source is live; none for files, whose batches
    fill up). max_frames: frames read per source. hud: draw FPS and latency on the annotated
    frames. on_frame: called from the sink thread after each frame with the frames out so far
    (progress bars). path: where the model's steps run (default: ``path_for(model)``).
    tracking: a TrackStage (tracker ids, line and zone events) run after postprocess, or None.
    classify: a CropClassifier (a classifier on each detection's crop) run after postprocess,
    before tracking, or None.
    overlay: extra host annotators (``annotate(image, item)``) drawn after the model's overlay.

    A source that fails (a stream that does not come back, a broken file) ends only itself:
    the others run on, and ``run`` then raises SourceFailed; that source's own sinks are closed
    as incomplete.
    """

    def __init__(
        self,
        sources: Source | Sequence[Source],
        model: Model,
        sinks: Sequence[Sink] | Mapping[int, Sequence[Sink]] = (),
        *,
        batch: int = 1,
        max_latency_ms: float | None = None,
        max_frames: int | None = None,
        hud: bool = False,
        on_frame: Callable[[int], None] | None = None,
        path: ModelPath | None = None,
        tracking=None,
        classify: CropClassifier | None = None,
        overlay: Sequence = (),
    ):
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self.sources = list(sources) if isinstance(sources, (list, tuple)) else [sources]
        if not self.sources:
            raise ValueError("no source given")
        self.model = model
        if isinstance(sinks, Mapping):
            self.shared_sinks, self.source_sinks = [], {int(k): list(v) for k, v in sinks.items()}
        else:
            self.shared_sinks, self.source_sinks = list(sinks), {}
        # per source: the sinks its frames go to, and whether one of them needs the drawn picture
        self._routes = [self.shared_sinks + self.source_sinks.get(i, []) for i in range(len(self.sources))]
        live = [s.live for s in self.sources]
        if max_latency_ms is None and any(live):
            max_latency_ms = 100.0
        self.batch, self.max_latency = batch, None if max_latency_ms is None else max_latency_ms / 1000
        self.max_frames, self.hud, self.on_frame = max_frames, hud, on_frame
        self.path = path if path is not None else path_for(model)
        self.tracking, self.extra_overlay, self.classify = tracking, list(overlay), classify
        self.metrics = RunMetrics()
        self._stop = threading.Event()
        self._drain = threading.Event()
        self._drained_at = 0.0
        self._aborted = False
        self.stopped_by: str | None = None  # the signal that drained the run, if one did
        self._close_errors: list[StageError] = []
        self._closed = False  # the sinks are closed: an abort has nothing left to stop
        self._abort_lock = threading.Lock()
        self._errors: list[StageError] = []
        self._failures: list[tuple[int, str, BaseException]] = []
        self._threads: list[threading.Thread] = []
        self._counts = [{"frames_in": 0, "frames_out": 0} for _ in self.sources]
        self._busy_s = 0.0  # recent model time per batch (moving average), to cut batches before the deadline
        self.batches = {"count": 0, "frames": 0, "cut_at_deadline": 0}
        q = self.metrics.queues
        # Queues are named after the stage that reads them; each source has its own first queue.
        self._inputs = [StageQueue(2 if s.live else 8, self._stop, drop_oldest=s.live) for s in self.sources]
        q["preprocess"] = QueueGroup(self._inputs)
        q["infer"] = StageQueue(batch if all(live) else 2 * batch, self._stop, drop_oldest=all(live))
        q["postprocess"] = StageQueue(2, self._stop)
        q["overlay"] = StageQueue(4, self._stop)
        q["sink"] = StageQueue(4, self._stop)


    # ---- control -------------------------------------------------------------------------

    def drain(self, signal_name: str | None = None) -> None:
        """Stop taking frames; finish the ones in flight and finalise the outputs. ``signal_name``:
        the signal that asked for it (``metrics["signal"]``)."""
        if not self._drain.is_set():
            self.stopped_by = signal_name
            self._drained_at = time.monotonic()
        self._drain.set()
        for s in self.sources:
            s.interrupt()  # e.g. stop waiting to reconnect

    def abort(self) -> None:
        """Stop every stage now; outputs not finalised yet are closed as incomplete (once they
        all are, there is nothing left to abort)."""
        with self._abort_lock:
            if not self._closed:
                self._aborted = True
        self._halt()

    def _halt(self) -> None:
        """Stop every stage and source (an abort, or a stage that failed): a source waiting to
        reconnect stops waiting, and a read still waiting is left to end by itself."""
        self._drained_at = self._drained_at or time.monotonic()
        self._stop.set()
        for s in self.sources:
            s.interrupt()

    # ---- stages --------------------------------------------------------------------------

    def _stage(self, name: str, body: Callable[[], None], thread_name: str | None = None) -> threading.Thread:
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
                self._halt()

        t = threading.Thread(target=target, name=f"rtpipe-{thread_name or name}", daemon=True)
        self._threads.append(t)
        return t

    def _grab(self, sid: int) -> None:
        source, out, stats, counts = self.sources[sid], self._inputs[sid], self.metrics.stage("grab"), self._counts[sid]
        frames = source.frames()
        try:
            while not self._drain.is_set() and not self._stop.is_set():
                if self.max_frames is not None and counts["frames_in"] >= self.max_frames:
                    break
                t0 = time.perf_counter()
                try:
                    frame = next(frames, None)
                except Exception as exc:  # noqa: BLE001 - this source ends; the others go on
                    self._failures.append((sid, getattr(source, "uri", str(sid)), exc))
                    break
                if frame is None:
                    break
                if frame.source_id != sid:
                    frame = replace(frame, source_id=sid)
                stats.add((time.perf_counter() - t0) * 1000)
                counts["frames_in"] += 1
                out.put(Item(frame))
            out.put(END)
        finally:
            frames.close()

    def _preprocess(self, sid: int) -> None:
        inq, out, stats = self._inputs[sid], self.metrics.queues["infer"], self.metrics.stage("preprocess")
        while (item := inq.get(timeout=WAIT)) is not END:
            if item is None:
                if self._read_abandoned():
                    break
                continue
            t0 = time.perf_counter()
            self.path.preprocess(item)
            stats.add((time.perf_counter() - t0) * 1000)
            out.put(item)
        out.put(SourceEnd(sid))

    def _read_abandoned(self) -> bool:
        """Whether reads still waiting are no longer waited for (see ``READ_GRACE_S``)."""
        return (self._drain.is_set() or self._stop.is_set()) and bool(self._drained_at) \
            and time.monotonic() - self._drained_at > READ_GRACE_S

    @staticmethod
    def _is_reader(thread: threading.Thread) -> bool:
        return thread.name.startswith("rtpipe-grab-")

    def _collect(self, inq: StageQueue, ended: set) -> list[Item]:
        """The next batch: up to ``batch`` frames, cut early when the oldest one's deadline
        comes (see ``max_latency_ms``) or when every source has ended."""
        items: list[Item] = []
        while len(items) < self.batch and len(ended) < len(self.sources):
            wait = None
            if items and self.max_latency is not None:
                wait = max(items[0].frame.captured_at + self.max_latency - self._busy_s - time.monotonic(), 0.0)
            nxt = inq.get(timeout=wait)
            if nxt is None:
                self.batches["cut_at_deadline"] += 1
                break
            if isinstance(nxt, SourceEnd):
                ended.add(nxt.source_id)
            else:
                items.append(nxt)
        return items

    def _infer(self) -> None:
        inq, out, stats = self.metrics.queues["infer"], self.metrics.queues["postprocess"], self.metrics.stage("infer")
        ended: set[int] = set()
        while items := self._collect(inq, ended):
            t0 = time.perf_counter()
            outputs = self.path.infer(items)
            took = time.perf_counter() - t0
            stats.add(took * 1000)
            self._busy_s = 0.8 * self._busy_s + 0.2 * took if self.batches["count"] else took
            self.batches["count"] += 1
            self.batches["frames"] += len(items)
            for it in items:
                it.tensor = None  # the input is not needed past here
            out.put(Batch(items, outputs))
        out.put(END)

    def _postprocess(self) -> None:
        inq, out, stats = self.metrics.queues["postprocess"], self.metrics.queues["overlay"], self.metrics.stage("postprocess")
        while (batch := inq.get()) is not END:
            t0 = time.perf_counter()
            self.path.postprocess(batch.outputs, batch.items)
            stats.add((time.perf_counter() - t0) * 1000)
            if self.classify is not None:
                t0 = time.perf_counter()
                self.classify.apply(batch.items)
                self.metrics.stage("classify").add((time.perf_counter() - t0) * 1000)
            if self.tracking is not None:
                for it in batch.items:  # one sample per frame: a tracker works frame by frame
                    t0 = time.perf_counter()
                    self.tracking.apply(it)
                    self.metrics.stage("track").add((time.perf_counter() - t0) * 1000)
            for it in batch.items:
                out.put(it)
        out.put(END)

    def _overlay(self) -> None:
        inq, out, stats = self.metrics.queues["overlay"], self.metrics.queues["sink"], self.metrics.stage("overlay")
        while (item := inq.get()) is not END:
            if any(s.needs_image for s in self._routes[item.frame.source_id]):  # (a view may want pictures only while watched)
                t0 = time.perf_counter()
                hud = None
                if self.hud:
                    hud = {"fps": self.metrics.recent_fps(), "latency_ms": self.metrics.e2e.last()}
                item.image = self.path.overlay(item, hud)
                for annotator in self.extra_overlay:
                    annotator.annotate(item.image, item)
                stats.add((time.perf_counter() - t0) * 1000)
            item.device = None  # the device copy is not needed past here
            self.metrics.to_overlay.add((time.monotonic() - item.frame.captured_at) * 1000)
            out.put(item)
        out.put(END)

    def _sink(self) -> None:
        inq, stats = self.metrics.queues["sink"], self.metrics.stage("sink")
        while (item := inq.get()) is not END:
            t0 = time.perf_counter()
            for s in self._routes[item.frame.source_id]:
                s.accept(item)
                if s.wants_stop:
                    self.drain()
            stats.add((time.perf_counter() - t0) * 1000)
            self._counts[item.frame.source_id]["frames_out"] += 1
            self.metrics.frame_out(item.frame.captured_at)
            if self.on_frame is not None:
                self.on_frame(self.metrics.frames_out)

    # ---- run -----------------------------------------------------------------------------

    def run(self, handle_sigint: bool = True) -> dict:
        """Run to the end of the sources (or drain/abort); return the metrics dict.

        With ``handle_sigint`` (and when called from the main thread) the first SIGINT, SIGTERM
        or SIGHUP drains and a second aborts (``metrics["signal"]`` names the first). Raises
        StageError if a stage failed (the sinks are then closed as incomplete: their partial
        files are kept under a ``.partial`` name; the error carries the metrics), SourceFailed
        after the run if a source failed.
        """
        bodies = [("grab", partial(self._grab, i), f"grab-{i}") for i in range(len(self.sources))]
        bodies += [("preprocess", partial(self._preprocess, i), f"preprocess-{i}") for i in range(len(self.sources))]
        bodies += [(name, body, None) for name, body in
                   zip(STAGES[2:], (self._infer, self._postprocess, self._overlay, self._sink))]
        for name in STAGES:  # every stage appears in the metrics, in pipeline order
            self.metrics.stage(name)
            if name == "postprocess" and self.classify is not None:
                self.metrics.stage("classify")
            if name == "postprocess" and self.tracking is not None:
                self.metrics.stage("track")
        signals = StopSignals(self.drain, lambda name: self.abort()) if handle_sigint else contextlib.nullcontext()
        self.metrics.started = time.monotonic()
        with signals:
            self._run(bodies)
        result = self._result()
        if self._errors or self._close_errors:
            error = (self._errors or self._close_errors)[0]
            error.metrics = result
            raise error from error.error
        if self._failures:
            failed = SourceFailed(self._failures, len(self.sources) > 1, result)
            raise failed from failed.error
        return result

    def _run(self, bodies) -> None:
        """Start the stages, wait for them, close the sinks (``_close_errors``: the ones that failed)."""
        try:
            for name, body, thread_name in bodies:
                self._stage(name, body, thread_name).start()
            while any(t.is_alive() and not (self._is_reader(t) and self._read_abandoned()) for t in self._threads):
                for t in self._threads:
                    t.join(WAIT)
        finally:
            self._stop.set()
            for t in self._threads:
                t.join(READ_GRACE_S if self._is_reader(t) else None)
            self.metrics.ended = time.monotonic()
            self.metrics.source_drops = sum(s.drops for s in self.sources)
            self.metrics.frames_in = sum(c["frames_in"] for c in self._counts)
            self._close_errors = self._close_sinks()

    def _result(self) -> dict:
        result = self.metrics.to_dict()
        result["interrupted"] = self._drain.is_set()
        result["aborted"] = self._aborted
        result["signal"] = self.stopped_by
        failed = {sid: f"{e.__class__.__name__}: {e}" for sid, _, e in self._failures}
        result["sources"] = [{**s.describe(), **self._counts[i], "drops": s.drops, "error": failed.get(i)}
                             for i, s in enumerate(self.sources)]
        result["source"] = result["sources"][0]
        result["model"] = self.model.info.to_dict()
        result["batch"] = self.batch
        result["batches"] = {**self.batches, "mean_size": round(self.batches["frames"] / max(self.batches["count"], 1), 3),
                             "max_latency_ms": None if self.max_latency is None else self.max_latency * 1000}
        result["path"] = self.path.name
        result["tracking"] = None if self.tracking is None else self.tracking.summary()
        sinks = [s for own in (self.shared_sinks, *self.source_sinks.values()) for s in own]
        result["video_left_out"] = {str(s.path): s.left_out for s in sinks if getattr(s, "left_out", 0)}  # (see VideoSink)
        return result

    def _close_sinks(self) -> list[StageError]:
        """Close every sink; as incomplete after an error or an abort (one that comes while the
        sinks are closing too: the ones not closed yet), and a failed source's own sinks (and,
        then, the shared ones)."""
        failed = {sid for sid, _, _ in self._failures}
        errors = []
        cut_short, aborted_before = False, self._aborted  # a sink left incomplete by an abort; one that came before
        for sid, sinks in [(None, self.shared_sinks), *self.source_sinks.items()]:
            for s in sinks:
                ok = not self._errors and (not failed if sid is None else sid not in failed)
                with self._abort_lock:
                    cut_short |= ok and self._aborted
                    ok = ok and not self._aborted
                try:
                    s.close(ok)
                except Exception as exc:  # noqa: BLE001 - report every sink that fails to finalise
                    errors.append(StageError("sink", exc))
        with self._abort_lock:
            self._closed = True
            if self._aborted and not aborted_before and not cut_short:
                self._aborted = False  # it came as the last output was finalised: nothing was aborted
        return errors
