"""One stream of the service: its settings as the API takes them (``StreamSpec``), and its run
(``Stream``): a Session over one source, on the service's shared model, in its own threads, so a
stream added, removed or failing never holds the others.

A stream's outputs (``save``, ``json``) are files the service names under its output folder:
``OUTPUTS/NAME/START.mp4`` and ``.jsonl`` (START: the UTC time the stream began, to the ms), so callers of
the API never choose a path on the service's disk, and a restarted stream never meets its
earlier outputs. Removing a stream finalises its outputs as Ctrl-C does for ``rtpipe run``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.config import RunConfig, build_config
from pipeline.runtime.session import Models, Session
from pipeline.service.restream import Restream, check_url
from pipeline.sinks import Sink
from pipeline.sources import redact
from pipeline.types import Detections, Frame

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
RECONNECT_S = 86_400.0  # a camera of the service is retried for a day before its stream counts as failed


class StreamSpec(BaseModel):
    """A stream as ``POST /streams`` takes it (and the state file keeps it)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(description="stream URL (rtsp://, http://, tcp://, srt://), camera index, video file or synthetic:WxH@FPS")
    name: str = Field(description="the stream's name: ASCII letters, digits, '_', '-', '.' (at most 64; a letter or digit first)")
    model: str | None = Field(None, description="model spec (default: the service's)")
    conf: float | None = Field(None, ge=0.0, le=1.0, description="minimum detection score (default: the service's)")
    lines: list[str] = Field(default_factory=list, description="counting lines, [NAME=]x1,y1,x2,y2")
    zones: list[str] = Field(default_factory=list, description="counting zones, [NAME=]x1,y1,x2,y2,x3,y3[,...]")
    track: str | None = Field(None, description="tracker: botsort, bytetrack or none (default: botsort with lines or zones)")
    save: bool = Field(False, description="write the annotated video under the service's output folder")
    json_out: bool = Field(False, alias="json", description="write the detections (JSONL) under the service's output folder")
    reconnect: float = Field(RECONNECT_S, ge=0.0, le=RECONNECT_S, description="seconds a dropped stream is retried")
    restream: str | None = Field(None, description="push the annotated video to this rtsp://, rtmp:// or srt:// URL")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.fullmatch(v):
            raise ValueError("use ASCII letters, digits, '_', '-' and '.', at most 64, starting with a letter or digit (it names "
                             "the output folder and the metrics)")
        return v

    @field_validator("restream")
    @classmethod
    def _restream(cls, v: str | None) -> str | None:
        return v if v is None else check_url(v)


class ShapesPatch(BaseModel):
    """``PATCH /streams/{id}``: new lines and zones (counts start again from zero)."""

    model_config = ConfigDict(extra="forbid")

    lines: list[str] | None = None
    zones: list[str] | None = None


def run_config(spec: StreamSpec, defaults: dict, outputs: Path, started: datetime) -> RunConfig:
    """The RunConfig of a stream: the service's defaults under the stream's own settings."""
    stamp = f"{started:%Y%m%dT%H%M%S}.{started.microsecond // 1000:03d}Z"
    folder = outputs / spec.name
    settings = {**defaults, "source": spec.source, "model": spec.model, "conf": spec.conf, "lines": spec.lines,
                "zones": spec.zones, "track": spec.track, "reconnect": spec.reconnect,
                "save": folder / f"{stamp}.mp4" if spec.save else None, "json": folder / f"{stamp}.jsonl" if spec.json_out else None}
    return build_config(None, settings, origin=f"stream '{spec.name}'")


class Probe(Sink):
    """The stream's eyes inside its pipeline: frame times, latency, events out, pictures for the view."""

    def __init__(self, stream: Stream):
        self.stream = stream

    @property
    def needs_image(self) -> bool:  # drawn only while someone watches
        return self.stream.viewers > 0

    def write(self, frame: Frame, detections: Detections, image: np.ndarray | None) -> None:
        self.stream._frame(frame, len(detections), image)

    def write_events(self, events: list) -> None:
        for e in events:
            self.stream.emit(e.model_dump(exclude_none=True))


class Stream:
    """A running stream. ``state``: starting, up, reconnecting, ended (a file that finished),
    failed (``error`` says why), stopping, stopped."""

    def __init__(self, sid: str, spec: StreamSpec, config: RunConfig, models: Models,
                 emit: Callable[[dict], None], on_latency: Callable[[float], None] | None = None):
        self.id, self.spec, self.config, self.models = sid, spec, config, models
        self._emit, self._on_latency = emit, on_latency
        self.state, self.error = "starting", None
        self.started = time.time()
        self.frames, self.detections, self.last_frame_at = 0, 0, None
        self.viewers = 0
        self.session: Session | None = None
        self.restream: Restream | None = None
        self._picture = threading.Condition()
        self._image: np.ndarray | None = None
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rtpipe-stream-{spec.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def emit(self, record: dict) -> None:
        self._emit({"stream": self.spec.name, "stream_id": self.id, **record})

    def _run(self) -> None:
        reason = None
        try:
            for out in (self.config.save, self.config.json_path):
                if out is not None:
                    out.parent.mkdir(parents=True, exist_ok=True)
            self.session = session = Session(self.config, self.models, stop=self._stop)  # a stop leaves a stream being opened
            if self._stop.is_set():
                session.close()
                self.state = "stopped"
                return
            session.sinks[0].append(Probe(self))
            if self.spec.restream is not None:
                self.restream = Restream(self.spec.restream, session.sources[0].fps)
                session.sinks[0].append(self.restream)
            session.run(handle_sigint=False)
            self.state = "stopped" if self._stop.is_set() else "ended"
            reason = self.state
        except Exception as exc:  # noqa: BLE001 - a stream that fails ends only itself, and says why
            self.state, self.error = "failed", " ".join(str(exc).split())[:500]
            reason = self.error
        finally:
            # stream_down pairs with stream_up; a stream that fails before its first frame says stream_failed
            if self.frames:
                self.emit({"event": "stream_down", "time": round(time.time(), 3), "reason": reason})
            elif self.state == "failed":
                self.emit({"event": "stream_failed", "time": round(time.time(), 3), "reason": reason})
            with self._picture:
                self._picture.notify_all()

    def _frame(self, frame: Frame, detections: int, image: np.ndarray | None) -> None:
        if self.frames == 0:  # up once frames come, not when the source is opened (also the frames a stop drains)
            if self.state == "starting":
                self.state = "up"
            self.emit({"event": "stream_up", "time": round(time.time(), 3)})
        self.frames += 1
        self.detections = detections
        self.last_frame_at = time.time()
        if self._on_latency is not None:
            self._on_latency(time.monotonic() - frame.captured_at)
        if image is not None:
            with self._picture:
                self._image, self._seq = image, self._seq + 1
                self._picture.notify_all()

    def picture(self, after: int, timeout: float) -> tuple[int, np.ndarray | None]:
        """The newest drawn picture once it is newer than ``after`` (its number, the image), or (after, None) on timeout."""
        with self._picture:
            self._picture.wait_for(lambda: self._seq > after or not self.alive, timeout)
            return (self._seq, self._image) if self._seq > after else (after, None)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def set_shapes(self, lines: list[str], zones: list[str]) -> None:
        """New lines and zones for the running stream (its tracker keeps going; the counts start from zero)."""
        pipeline = self.session.pipeline if self.session is not None else None
        if pipeline is None:
            raise ValueError(f"stream '{self.spec.name}' is {self.state}, not running: try again once it is up")
        if pipeline.tracking is None:
            raise ValueError(f"stream '{self.spec.name}' runs no tracker: add it with lines, zones or track to count")
        from pipeline.analytics import parse_shapes
        from pipeline.overlay.tracks import CountsAnnotator

        shapes = parse_shapes(lines, zones)
        pipeline.tracking.set_shapes(shapes)
        for annotator in pipeline.extra_overlay:
            if isinstance(annotator, CountsAnnotator):
                annotator.shapes = shapes
        self.spec = self.spec.model_copy(update={"lines": lines, "zones": zones})

    def stop(self, timeout: float = 30.0) -> None:
        """Finalise the outputs with the frames done (as a Ctrl-C of this stream) and wait for it to
        end; after ``timeout`` s it is aborted (its outputs kept only as .partial)."""
        self._stop.set()
        if self.state not in ("ended", "failed"):
            self.state = "stopping"
        deadline, drained = time.monotonic() + timeout, False
        while self._thread.is_alive() and time.monotonic() < deadline:
            session = self.session
            if not drained and session is not None:
                session.drain()  # (also before its run began: the run then ends at once)
                drained = True
            self._thread.join(0.05)
        if self._thread.is_alive() and self.session is not None:
            self.session.abort()
            self._thread.join(5.0)

    def status(self) -> dict:
        """The stream as ``GET /streams/{id}`` shows it."""
        session = self.session
        source = session.sources[0] if session is not None else None
        pipeline = session.pipeline if session is not None else None
        state = self.state
        if state in ("starting", "up") and source is not None and getattr(source, "outage", None) is not None:
            state = "reconnecting"
        metrics = pipeline.metrics if pipeline is not None else None
        tracking = pipeline.tracking if pipeline is not None else None
        return {
            "id": self.id, "name": self.spec.name, "source": source.uri if source is not None else self.spec.source,
            "state": state, "error": self.error, "started": round(self.started, 3),
            "frames": self.frames, "fps": None if metrics is None else metrics.recent_fps(),
            "dropped": 0 if metrics is None else metrics.dropped(), "last_frame_at": self.last_frame_at,
            "latency_ms": None if metrics is None else metrics.e2e.last(),  # the last frame's, capture to output
            "gaps": len(getattr(source, "gaps", []) or []), "reconnects": len(getattr(source, "gaps", []) or []),
            "counts": tracking.counts() if tracking is not None else {},
            "outputs": [str(s.path) for _, s in session.outputs()] if session is not None else [],
            "restream": None if self.restream is None else self.restream.stats(),
            "settings": {k: redact(v) if k in ("source", "restream") else v
                         for k, v in self.spec.model_dump(by_alias=True, exclude_defaults=True).items()},
        }
