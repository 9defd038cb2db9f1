"""The service as a library object: streams added and removed while it runs, one loaded model per
model spec shared by every stream that uses it, events out through the outbox, the streams kept
in a state file::

    from pipeline.service import Service, ServiceConfig

    service = Service(ServiceConfig(mqtt="mqtt://127.0.0.1:1883", state="state.json"))
    service.start()                      # brings back the streams of the state file
    sid = service.add({"source": "rtsp://cam1/live", "name": "gate", "lines": ["0,0.5,1,0.5"]})
    print(service.get(sid)["state"], service.get(sid)["fps"])
    service.remove(sid)                  # its outputs finalised
    service.stop()                       # every stream finalised, undelivered events kept spooled

``rtpipe serve`` is this object behind an HTTP API (``pipeline.service.api``).
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.config import ConfigError, build_config, explain
from pipeline.runtime.session import Models, load_models
from pipeline.service.outbox import DEFAULT_TOPIC, Mqtt, Outbox, Webhook
from pipeline.service.streams import Stream, StreamSpec, run_config
from pipeline.types import InputError

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "tcp", "udp", "srt", "rtp")
MODEL_KEYS = ("model", "conf", "iou", "imgsz", "max_det", "classes", "backend", "device", "trust_checkpoint", "trust_engine")


class ServiceConfig(BaseModel):
    """``rtpipe serve``'s settings (its flags; the keys of ``--config service.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("demo", description="the default model of the streams")
    conf: float = Field(0.25, ge=0.0, le=1.0, description="the default minimum detection score")
    device: str = Field("cpu", description="cpu or cuda[:N]")
    outputs: Path = Field(Path("serve-outputs"), description="folder of the streams' saved video and detections")
    state: Path | None = Field(None, description="JSON file the streams are kept in (restored at start)")
    allow_files: Path | None = Field(None, description="folder whose video files the API may open (none: no local files)")
    mqtt: str | None = Field(None, description="MQTT broker for the events, mqtt://[USER:PASS@]HOST[:PORT]")
    mqtt_topic: str = Field(DEFAULT_TOPIC, description="topic template ({stream}, {event})")
    webhook: list[str] = Field(default_factory=list, description="URLs each event is POSTed to")
    spool: Path = Field(Path("serve-spool"), description="folder of the events waiting for a destination")
    spool_mb: float = Field(64.0, gt=0, le=1_000_000, description="cap of each destination's spool, MiB")
    streams: list[StreamSpec] = Field(default_factory=list, description="streams to start with")


class StreamNotFound(KeyError):
    pass


def locked(infer, lock: threading.Lock):
    """``infer`` called by one stream at a time (streams share a model; its backend runs one batch at once)."""

    def call(batch):
        with lock:
            return infer(batch)

    return call


class Service:
    """``destinations``: where events go, instead of the config's MQTT broker and webhooks (each has
    ``name``, ``deliver(record, payload)`` raising ``outbox.DeliveryError``, and ``close()``)."""

    def __init__(self, config: ServiceConfig, destinations: list | None = None):
        if config.state is not None and not config.state.expanduser().resolve().parent.is_dir():
            raise ConfigError(f"--state '{config.state}': its folder does not exist: create it, or give another path")
        self.config = config
        if destinations is None:
            destinations = ([Mqtt(config.mqtt, config.mqtt_topic)] if config.mqtt else []) + [Webhook(u) for u in config.webhook]
        self.outbox = Outbox(destinations, config.spool, int(config.spool_mb * 2**20))
        self.streams: dict[str, Stream] = {}
        self._models: dict[tuple, Models] = {}
        self._default: Models | None = None  # the service's own model settings' (loaded at start, kept)
        self._lock = threading.RLock()
        self.on_latency = None  # set by the exporter: (stream name, seconds) per frame
        self.on_removed = None  # set by the exporter: (stream name) once a stream is removed
        self.events = 0  # made by the streams (each published to every destination)
        self._counting = threading.Lock()
        self.started = False

    # ---- life -----------------------------------------------------------------------------

    def start(self) -> None:
        """Load the default model, start delivering events, and bring back the streams of the state
        file (or, before there is one, the configured ``streams``). A stream that cannot start (its
        file moved, its model gone) is listed as failed with its reason; the others start."""
        self._model_for(build_config(None, {"source": "synthetic:64x64@1", "model": self.config.model, "conf": self.config.conf,
                                            "device": self.config.device}, origin="serve"))
        self.outbox.start()
        self.started = True
        saved = self._read_state()
        for spec in saved if saved is not None else self.config.streams:
            try:
                self.add(spec, save=False)
            except InputError as exc:
                stream = Stream(uuid.uuid4().hex[:12], spec, None, None, self._emit)
                stream.state, stream.error = "failed", " ".join(str(exc).split())[:500]
                self.streams[stream.id] = stream
        self._save_state()

    def stop(self, timeout: float = 30.0) -> None:
        """Finalise every stream (in parallel), then deliver what the outbox can in a few seconds."""
        with self._lock:
            streams = list(self.streams.values())
        threads = [threading.Thread(target=s.stop, args=(timeout,)) for s in streams]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.outbox.close()

    # ---- streams --------------------------------------------------------------------------

    def add(self, spec: StreamSpec | dict, save: bool = True) -> str:
        """Start a stream; its id. ConfigError (one line) for bad settings, a name in use or a refused source."""
        if not isinstance(spec, StreamSpec):
            try:
                spec = StreamSpec.model_validate(spec)
            except ValidationError as exc:
                raise ConfigError(explain(exc, "stream")) from None
        if (local := self._check_source(spec.source)) is not None:
            spec = spec.model_copy(update={"source": str(local)})  # (kept so: a restart from another folder finds it)
        with self._lock:
            if any(s.spec.name == spec.name and s.alive for s in self.streams.values()):
                raise ConfigError(f"a stream is already called '{spec.name}': remove it first, or choose another name")
            defaults = {"model": self.config.model, "conf": self.config.conf, "device": self.config.device}
            config = run_config(spec, defaults, self.config.outputs, datetime.now(timezone.utc))
            config.check_tracking()
            models = self._model_for(config)
            sid = uuid.uuid4().hex[:12]
            stream = Stream(sid, spec, config, models, self._emit, self._latency(spec.name))
            self.streams = {k: v for k, v in self.streams.items() if not (v.spec.name == spec.name and not v.alive)}
            self.streams[sid] = stream
            stream.start()
            if save:
                self._save_state()
        return sid

    def remove(self, sid: str, timeout: float = 30.0) -> dict:
        """Stop a stream, its outputs finalised; its last status."""
        with self._lock:
            stream = self.streams.pop(self._find(sid).id)
            self._save_state()
        stream.stop(timeout)
        with self._lock:  # a model no stream uses any more is let go (each conf/imgsz/... is its own copy)
            used = {id(s.models) for s in self.streams.values()} | {id(self._default)}
            self._models = {k: m for k, m in self._models.items() if id(m) in used}
        if self.on_removed is not None and not any(s.spec.name == stream.spec.name for s in self.streams.values()):
            self.on_removed(stream.spec.name)
        return stream.status()

    def update(self, sid: str, lines: list[str] | None, zones: list[str] | None) -> dict:
        """New lines and/or zones for a running stream (ValueError when it counts nothing: no tracker)."""
        with self._lock:
            stream = self._find(sid)
            stream.set_shapes(stream.spec.lines if lines is None else lines, stream.spec.zones if zones is None else zones)
            self._save_state()
        return stream.status()

    def get(self, sid: str) -> dict:
        return self._find(sid).status()

    def list(self) -> list[dict]:
        with self._lock:
            streams = list(self.streams.values())
        return [s.status() for s in streams]

    def _find(self, sid: str) -> Stream:
        with self._lock:
            if sid in self.streams:
                return self.streams[sid]
            named = [s for s in self.streams.values() if s.spec.name == sid]
        if not named:
            raise StreamNotFound(sid)
        return named[0]

    def _check_source(self, source: str) -> Path | None:
        """A source that is a local path must lie inside ``allow_files`` (a caller of the API cannot read the
        disk); returns that file's absolute path, or None for a URL, a camera or synthetic frames."""
        scheme = source.partition("://")[0].lower() if "://" in source else None
        if scheme in NETWORK_SCHEMES or source.isdigit() or re.fullmatch(r"/dev/video\d+|synthetic:.*", source):
            return None
        if scheme is not None or source.startswith("file:"):
            raise ConfigError(f"source '{source}': the service opens {', '.join(NETWORK_SCHEMES)} URLs, cameras, synthetic: "
                              "and files inside --allow-files")
        allowed = self.config.allow_files
        if allowed is None:
            raise ConfigError(f"source '{source}' is a local file: the service opens files only inside the folder given "
                              "by --allow-files DIR")
        path, root = Path(source).expanduser().resolve(), allowed.expanduser().resolve()
        if not path.is_relative_to(root):
            raise ConfigError(f"source '{source}' is outside the folder --allow-files allows ({root})")
        if not path.is_file():
            raise ConfigError(f"source '{source}' is not a file in {root}")
        return path

    def _model_for(self, config) -> Models:
        key = tuple(str(getattr(config, k)) for k in MODEL_KEYS)
        if key not in self._models:
            models = load_models(config)
            models.model.infer = locked(models.model.infer, threading.Lock())
            self._models[key] = models
            if self._default is None:
                self._default = models
        return self._models[key]

    # ---- events, state --------------------------------------------------------------------

    def _emit(self, record: dict) -> None:
        with self._counting:
            self.events += 1
        self.outbox.publish(record)

    def _latency(self, name: str):
        return lambda seconds: self.on_latency is not None and self.on_latency(name, seconds)

    def _read_state(self) -> list[StreamSpec] | None:
        """The streams of the state file; None when there is none (yet)."""
        path = self.config.state
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return [StreamSpec.model_validate(s) for s in data["streams"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"state file '{path}' cannot be read ({' '.join(str(exc).split())[:200]}): fix it or move it "
                              "away (the service starts with no streams then)") from None

    def _save_state(self) -> None:
        """The streams and their settings, written atomically (a temporary file renamed over the old one)."""
        path = self.config.state
        if path is None or not self.started:
            return
        with self._lock:
            specs = [s.spec.model_dump(by_alias=True, exclude_defaults=True) for s in self.streams.values()]
        tmp = path.with_name(path.name + ".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:  # (camera URLs may hold passwords)
            json.dump({"streams": specs}, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
