"""The library session: settings -> model, sources, sinks, Pipeline -> metrics.

``rtpipe run`` and ``rtpipe demo`` run exactly this; a Python user runs the same job::

    from pipeline.runtime.session import Session

    session = Session.from_settings(source="clip.mp4", model="demo", save="out.mp4")
    for result in session.stream(draw=True):  # as the frames come: frame, detections, drawn image
        print(result.frame.index, len(result.detections))
    print(session.metrics["fps"])

``run(on_result=...)`` does the same with a callback (called from the pipeline's sink thread)
and returns the metrics dict. Settings are ``pipeline.config.RunConfig``'s (the YAML keys).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from pipeline.analytics import Event, parse_shapes
from pipeline.analytics.speed import parse_calibration
from pipeline.config import ConfigError, RunConfig, build_config, weights_for
from pipeline.loader import load_model
from pipeline.runtime.pipeline import Pipeline, SourceFailed, StageError
from pipeline.sinks import Sink, check_writable, open_sinks, partial_path, per_source, write_complete
from pipeline.sources import open_source
from pipeline.types import Detections, Frame

if TYPE_CHECKING:
    from pipeline.models import Model
    from pipeline.runtime.classify import CropClassifier


@dataclass(frozen=True)
class Result:
    """One frame out of the pipeline: its detections (frame pixels; ``tracker_id`` set when a
    tracker runs), the line and zone events of this frame, and the drawn picture when it was
    asked for (``draw=True``) or a sink needed one."""

    frame: Frame
    detections: Detections
    image: np.ndarray | None
    events: tuple[Event, ...] = ()


class CallbackSink(Sink):
    """Hands every frame to ``callback(Result)`` (from the sink thread)."""

    def __init__(self, callback: Callable[[Result], None], draw: bool):
        self.callback, self.needs_image = callback, draw

    def accept(self, item) -> None:
        self.callback(Result(item.frame, item.detections, item.image, tuple(item.events)))


class Models(NamedTuple):
    """What a run loads once: the model and, with ``classify_crops``, the crop classifier. A batch
    job loads them once and hands them to every recording's Session."""

    model: Model
    classify: CropClassifier | None = None


def load_models(config: RunConfig) -> Models:
    """The run's model (and crop classifier) as the settings say; ModelError/ConfigError with one line."""
    if config.classify_weights is not None and config.classify_crops is None:
        raise ConfigError("--classify-weights is the weights of --classify-crops: add --classify-crops SPEC, or drop it")
    model = load_model(config.model, backend=config.backend, device=config.device, conf=config.conf, iou=config.iou,
                       max_det=config.max_det, classes=config.classes, imgsz=config.imgsz, weights=weights_for(config.model, config.weights),
                       trust_checkpoint=config.trust_checkpoint, trust_engine=config.trust_engine, nms=config.nms, rect=config.rect)
    if config.classify_crops is None:
        return Models(model)
    from pipeline.runtime.classify import CropClassifier

    crops = load_model(config.classify_crops, backend=config.backend, device=config.device,
                       weights=weights_for(config.classify_crops, config.classify_weights, "--classify-weights"),
                       trust_checkpoint=config.trust_checkpoint, trust_engine=config.trust_engine)
    try:
        return Models(model, CropClassifier(crops))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class Session:
    """One run's model, sources and sinks, set up from validated settings (nothing is read yet).
    ``models``: already loaded ones (``load_models``) to use instead of loading them again.

    ``stop``: an Event that, once set, makes the sources stop waiting (a stream being opened is
    left at once, a reconnection not tried): ``drain()`` sets it, and a caller that may stop the
    run while the Session is still being made (a signal handler) can set it sooner.

    Raises ConfigError (settings), ModelError, SourceError or SinkError with a one-line message
    (sinks made before a failing one are closed again).
    """

    def __init__(self, config: RunConfig, models: Models | None = None, stop: threading.Event | None = None):
        if config.source is None:
            raise ConfigError("no source: give one, e.g. 'rtpipe run clip.mp4' or 'rtpipe run synthetic:1280x720@30'")
        check_outputs(config)
        config.check_tracking()
        self.config = config
        self.stop = stop if stop is not None else threading.Event()
        self._drain: tuple[str | None] | None = None  # (signal name,) once drain() came before the pipeline existed
        self.models = models if models is not None else load_models(config)
        self.model, self.classify = self.models.model, self.models.classify
        self.sources = [open_source(uri, source_id=i, reconnect=config.reconnect, device=config.device, stall=config.stall_timeout,
                                    stop=self.stop) for i, uri in enumerate(config.sources)]
        self.sinks = open_sinks(self.sources, self.model.info.names, save=config.save, jsonl=config.json_path, show=config.show,
                                serve=config.serve_address(), token=config.token, events=config.events, heatmap=config.heatmap,
                                overwrite=config.overwrite)
        self.pipeline: Pipeline | None = None
        self.metrics: dict | None = None
        self.error: BaseException | None = None  # what ended a streamed run, if anything did
        self._abort = False

    @classmethod
    def from_settings(cls, preset: str | Path | None = None, **settings) -> Session:
        """Settings as keyword arguments (RunConfig's names; ``json`` for the JSONL path) over an optional YAML preset."""
        return cls(build_config(preset, settings, origin="settings"))

    @property
    def total_frames(self) -> int | None:
        """Frames the run will read when every source says how many it has, else None (live)."""
        limit = self.config.frames
        totals = [s.total if limit is None else min(limit, s.total or limit) for s in self.sources]
        return None if None in totals else sum(totals)

    def outputs(self) -> list[tuple[int, Sink]]:
        """(source id, sink) for every sink that writes a file, in source order (a file shared by
        every source, the events, once: source None)."""
        found: dict[int, tuple[int | None, Sink]] = {}
        for i, own in self.sinks.items():
            for s in own:
                if s.path is not None:
                    found[id(s)] = (None if s.shared else i, s)
        return list(found.values())

    def close(self) -> None:
        """Release the outputs of a session that will not run (a run closes them itself)."""
        if self.pipeline is None:
            for s in (s for own in self.sinks.values() for s in own):
                s.close(False)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def drain(self, signal_name: str | None = None) -> None:
        """Stop taking frames, from any thread (before the run starts too): the frames in flight
        are finished and the outputs finalised. ``signal_name``: the signal that asked for it."""
        self.stop.set()
        if self._drain is None:
            self._drain = (signal_name,)
        if self.pipeline is not None:
            self.pipeline.drain(signal_name)

    def abort(self) -> None:
        """Stop the run now, from any thread (before it starts too): its outputs are kept only as ``.partial``."""
        self._abort = True
        self.stop.set()
        if self.pipeline is not None:
            self.pipeline.abort()

    def kept_partial(self) -> list[Path]:
        """The ``.partial`` files an unfinished run left behind."""
        return [partial_path(s.path) for _, s in self.outputs() if partial_path(s.path).exists()]

    def run(self, on_result: Callable[[Result], None] | None = None, draw: bool = False,
            on_frame: Callable[[int], None] | None = None, handle_sigint: bool = True) -> dict:
        """Run to the end of the sources; return the metrics dict (also written to ``metrics_json``).

        on_result: called with every Result, from the sink thread (draw: with the drawn picture).
        on_frame: called with the frames out so far (progress). handle_sigint: the first Ctrl-C
        drains, the second aborts (main thread only). Raises StageError if a stage failed and
        SourceFailed if a source did (its metrics are written all the same).
        """
        if self.pipeline is not None:
            raise RuntimeError("a Session runs once: make a new one")
        sinks = self.sinks
        if on_result is not None:
            extra = CallbackSink(on_result, draw)
            sinks = {i: [*own, extra] for i, own in sinks.items()}
        c = self.config
        tracking, overlay = self._tracking()
        self.pipeline = Pipeline(self.sources, self.model, sinks, batch=c.batch, max_latency_ms=c.max_latency_ms,
                                 max_frames=c.frames, hud=c.hud, on_frame=on_frame, tracking=tracking, overlay=overlay,
                                 classify=self.classify)
        if self._drain is not None:  # drain() came before the pipeline existed
            self.pipeline.drain(*self._drain)
        if self._abort:  # abort() came before the pipeline existed
            self.pipeline.abort()
        written = None
        try:
            self.metrics = written = self.pipeline.run(handle_sigint=handle_sigint)
        except SourceFailed as exc:
            self.metrics = written = exc.metrics
            raise
        except StageError as exc:  # the metrics up to the failure are written, with the error
            if exc.metrics is not None:
                written = {**exc.metrics, "error": str(exc)}
            raise
        finally:
            if written is not None and c.metrics_json is not None:
                write_metrics(c.metrics_json, written)
        return self.metrics

    def _tracking(self) -> tuple:
        """The track stage and its overlay annotators, as the settings ask (None, [] without a tracker)."""
        c = self.config
        if c.tracker is None:
            return None, []
        from pipeline.overlay.tracks import CountsAnnotator, TrailAnnotator
        from pipeline.runtime.track import TrackStage

        shapes = parse_shapes(c.lines, c.zones)
        calibration = None if c.calibrate is None else parse_calibration(c.calibrate)
        stage = TrackStage(c.tracker, c.track_settings, shapes, self.model.info.names, self.sources, calibration, c.reid,
                           c.smooth_boxes)
        overlay = ([TrailAnnotator(c.trails)] if c.trails else []) + ([CountsAnnotator(shapes)] if shapes else [])
        return stage, overlay

    def stream(self, draw: bool = False) -> Iterator[Result]:
        """The results as they come, in the caller's thread. Leaving the loop early drains the
        run (outputs are finalised with the frames done). An error in the run is raised in the
        loop; one while finishing after an early exit is kept in ``error`` (and ``metrics`` stays None)."""
        results: queue.Queue = queue.Queue(maxsize=8)
        done = threading.Event()
        failure: list[BaseException] = []

        def hand_over(result: Result) -> None:
            while not done.is_set():
                try:
                    results.put(result, timeout=0.05)
                    return
                except queue.Full:
                    pass

        def work() -> None:
            try:
                self.run(on_result=hand_over, draw=draw, handle_sigint=False)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
            finally:
                results.put(None)

        thread = threading.Thread(target=work, name="rtpipe-session", daemon=True)
        thread.start()
        try:
            while (item := results.get()) is not None:
                yield item
        finally:  # also when the caller leaves the loop (the generator is closed)
            done.set()  # stop handing over; the run finishes what is in flight
            drained = False
            while thread.is_alive():
                if not drained and self.pipeline is not None:  # (the run may not have built it yet)
                    self.pipeline.drain()
                    drained = True
                try:
                    results.get(timeout=0.05)
                except queue.Empty:
                    pass
            thread.join()
            self.error = failure[0] if failure else None
            if failure:  # raised to the caller; after a break Python reports it as the generator closes
                raise failure[0]


def write_metrics(path: Path, metrics: dict) -> None:
    """The metrics as JSON at ``path`` (written under its partial name, then renamed); a file that
    cannot be written (a full disk) fails the sink stage with one line, and leaves no partial file."""
    try:
        write_complete(path, json.dumps(metrics, indent=2) + "\n")
    except OSError as exc:
        partial_path(Path(path)).unlink(missing_ok=True)
        raise StageError("sink", OSError(f"cannot write the metrics to '{path}': {exc.strerror or exc}")) from None


def check_outputs(config: RunConfig) -> None:
    """Outputs that would overwrite an input or each other, or windows for several sources, are settings errors."""
    n = len(config.sources)
    if n > 1 and (config.show or config.serve):
        raise ConfigError("--show and --serve show one source: with several sources write --save/--json (one file per source)")
    inputs = {Path(s).expanduser().resolve() for s in config.sources if Path(s).exists()}
    inputs |= {Path(p).resolve() for s in config.sources if not Path(s).exists() and any(c in s for c in "*?[") for p in glob(s)}
    picture_folders = {p if p.is_dir() else p.parent for p in inputs}  # where input pictures live
    outs = [per_source(p, i, n) for p in (config.save, config.json_path) if p is not None for i in range(n)]
    outs += [p for p in (config.metrics_json, config.events) if p is not None]
    if config.heatmap is not None:  # the picture and its array, per source
        outs += [q for i in range(n) for q in (per_source(config.heatmap, i, n), per_source(config.heatmap, i, n).with_suffix(".npy"))]
    if config.metrics_json is not None:
        check_writable(Path(config.metrics_json))  # before the run, as the sinks' outputs are
    for p in outs:
        if Path(p).expanduser().resolve() in inputs:
            raise ConfigError(f"output '{p}' is the input file: choose another output path")
        if p is not None and Path(p).suffix == "" and Path(p).expanduser().resolve() in picture_folders:
            raise ConfigError(f"output folder '{p}' holds the input pictures: choose another folder")
        if not config.overwrite and not Path(p).is_dir() and (Path(p).expanduser().exists() or Path(p).expanduser().is_symlink()):
            raise ConfigError(f"output '{p}' exists: give --overwrite to replace it, or another path")
    if len({Path(p).expanduser().resolve() for p in outs}) != len(outs):
        raise ConfigError("two outputs share one path: give --save, --json, --events, --heatmap and --metrics-json different files")
