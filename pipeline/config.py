"""Run settings: one validated model, read from a YAML preset and/or the command line.

Values are parsed, never evaluated. Unknown keys are refused with a did-you-mean hint; every
error is one line naming the key, where it came from and what is allowed.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.backends import BACKENDS
from pipeline.sources import STALL_S
from pipeline.types import InputError

MAX_DET = 10_000  # detections per frame: what per-frame work (masks, overlays, tracking) is bounded by
CONSENT_KEYS = ("trust_checkpoint", "trust_engine", "overwrite")  # command line only: never from a preset
DEFAULT_TRACKER = "botsort"  # measured best on the demo's clips (pipeline/tracking/roboflow.py)


class ConfigError(InputError):
    """Bad settings; the message is one line that says what to fix."""


def _device_name(v):
    if isinstance(v, int) or (isinstance(v, str) and v.isdigit()):  # Ultralytics' habit: --device 0
        raise ValueError(f"'{v}' is not a device name: write cuda:{v} for GPU {v}, or cpu")
    return v


Device = Annotated[str, BeforeValidator(_device_name), Field(pattern=r"^(cpu|cuda(:\d+)?)$")]  # cpu or cuda[:N]


def _input_size(v):
    """N, "N", "H,W", "HxW" or [H, W] -> N or (H, W), each from 32 to 8192."""
    if isinstance(v, str):
        parts = [p.strip() for p in v.replace("x", ",").split(",")]
        if not all(p.isdigit() for p in parts) or len(parts) not in (1, 2):
            raise ValueError(f"{v[:40]!r} is not an input size: write N, or H,W (e.g. 384,640)")
        v = [int(p) for p in parts]
        v = v[0] if len(v) == 1 else v
    if isinstance(v, (list, tuple)):
        if len(v) != 2 or not all(type(x) is int for x in v):
            raise ValueError(f"{v!r:.60} is not an input size: write N, or H,W (e.g. 384,640)")
        v = tuple(v) if v[0] != v[1] else v[0]
    if type(v) is not int and not isinstance(v, tuple):
        raise ValueError(f"{v!r:.60} is not an input size: write N, or H,W (e.g. 384,640)")
    if not all(32 <= x <= 8192 for x in (v if isinstance(v, tuple) else (v,))):
        raise ValueError(f"input size {v} is outside 32..8192")
    return v


InputSize = Annotated[int | tuple[int, int], BeforeValidator(_input_size)]  # N (square) or (H, W)


def input_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


class RunConfig(BaseModel):
    """Everything ``rtpipe run`` needs. YAML keys are these names (``json`` for the JSONL path)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    source: str | list[str] | None = Field(None, description="video file, image(s), camera, stream URL or synthetic:WxH@FPS; "
                                                               "a list runs them all through one model")
    model: str = Field("demo", description="ONNX file, .pt checkpoint, torchvision:<arch> or builtin model name")
    weights: str | None = Field(None, description="torchvision:<arch> weights: state_dict file, DEFAULT (downloads) or random")
    trust_checkpoint: bool = Field(False, description="allow unpickling a .pt checkpoint's Python objects")
    trust_engine: bool = Field(False, description="allow loading a .pt2/.engine rtpipe did not build on this account (native code)")
    backend: Literal[BACKENDS] = "auto"  # type: ignore[valid-type]
    device: Device = Field("cpu", description="cpu or cuda[:N]")
    conf: float = Field(0.25, ge=0.0, le=1.0, description="minimum detection score")
    iou: float = Field(0.45, ge=0.0, le=1.0, description="NMS IoU threshold")
    imgsz: InputSize | None = Field(None, description="input size, N or H,W (checked against a fixed-size ONNX; sets it for "
                                                     "checkpoints)")
    rect: bool = Field(True, description="checkpoints: inputs fitted to each frame's shape (YOLO: padded only to a multiple of "
                                         "the stride, Ultralytics' rect), not the whole fixed input")
    max_det: int = Field(300, ge=1, le=MAX_DET, description=f"detections kept per frame (at most {MAX_DET})")
    nms: bool = Field(False, description="also run NMS on NMS-free models' outputs (YOLO26 end-to-end, RT-DETR)")
    classes: list[int] | None = Field(None, description="keep only these class ids")
    batch: int = Field(1, ge=1, le=256, description="frames per model call")
    max_latency_ms: float | None = Field(None, gt=0.0, le=60_000, description="cut a batch before its oldest frame is this old when done "
                                                                             "(default 100 with a live source; files: full batches)")
    frames: int | None = Field(None, gt=0, description="stop after this many frames")
    reconnect: float = Field(30.0, ge=0.0, le=86_400, description="seconds a dropped camera or stream is retried (0: never)")
    stall_timeout: float = Field(STALL_S, gt=0.0, le=600, description="seconds a network stream may take to open or send nothing "
                                                                  "before it counts as down")
    save: Path | None = Field(None, description="annotated video output (.mp4/.mkv/.mov); for an image folder, a folder for "
                                                "annotated pictures named as the inputs")
    json_path: Path | None = Field(None, alias="json", description="JSONL detections output")
    show: bool = Field(False, description="show a window (needs OpenCV with GUI)")
    serve: str | None = Field(None, description="HOST:PORT or PORT for the browser view")
    token: str | None = Field(None, min_length=1, description="access token for the browser view")
    hud: bool = Field(False, description="draw FPS and latency on the video")
    metrics_json: Path | None = Field(None, description="write the metrics dict here")
    overwrite: bool = Field(False, description="replace outputs that exist (without it, an existing output is an error)")
    track: str | None = Field(None, description="tracker: botsort, bytetrack, or none (default: botsort when lines, zones, "
                                                "events or trails are asked for, else none)")
    track_settings: dict[str, float] = Field(default_factory=dict, description="the tracker's own settings (README: Tracking)")
    lines: list[str] = Field(default_factory=list, description="counting lines, [NAME=]x1,y1,x2,y2 (pixels, or fractions 0..1)")
    zones: list[str] = Field(default_factory=list, description="counting zones, [NAME=]x1,y1,x2,y2,x3,y3[,...]")
    events: Path | None = Field(None, description="JSONL of line and zone events")
    trails: int = Field(0, ge=0, le=300, description="draw each track's last N centres")
    reid: str | None = Field(None, description="appearance re-identification over the tracker: hist (README: Tracking)")
    smooth_boxes: bool = Field(False, description="tracked detections' boxes are their tracks' smoothed (Kalman) states")
    calibrate: str | None = Field(None, description="ground plane for speeds: 4 picture points = the 4 ground points (metres) "
                                                    "they show, x1,y1,...,x4,y4=X1,Y1,...,X4,Y4")
    heatmap: Path | None = Field(None, description="heatmap of where detections stood (box bottom centres): PATH.png over the "
                                                   "last frame, and the accumulated array as PATH.npy")
    classify_crops: str | None = Field(None, description="a classifier run on each detection's crop (torchvision:<arch>, or a "
                                                         "classifier checkpoint or engine)")
    classify_weights: str | None = Field(None, description="the crop classifier's weights: a state_dict file, DEFAULT or random")

    @field_validator("serve")
    @classmethod
    def _serve(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.fullmatch(r"(?:[\w.\-]+:|\[[0-9a-fA-F:]+\]:)?\d{1,5}", v) or not 0 < int(v.rsplit(":", 1)[-1]) < 65536:
            raise ValueError("use HOST:PORT or PORT, e.g. 127.0.0.1:8080")
        return v

    @field_validator("heatmap")
    @classmethod
    def _heatmap(cls, v: Path | None) -> Path | None:
        if v is not None and v.suffix.lower() != ".png":
            raise ValueError(f"'{v}' is not a .png name: give PATH.png (the array is written beside it as PATH.npy)")
        return v

    @model_validator(mode="after")
    def _token_needs_serve(self):
        if self.token is not None and self.serve is None:
            raise ValueError("token is for the browser view: add --serve PORT (or serve: in the preset), or drop the token")
        return self

    @field_validator("source")
    @classmethod
    def _source(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("give at least one source")
            return v[0] if len(v) == 1 else v
        return v

    @property
    def tracker(self) -> str | None:
        """The tracker that runs, or None (see ``track``)."""
        if self.track == "none":
            return None
        if self.track is None:
            return DEFAULT_TRACKER if (self.lines or self.zones or self.events or self.trails or self.track_settings
                                       or self.calibrate or self.reid or self.smooth_boxes) else None
        return self.track

    def check_tracking(self) -> None:
        """The tracking settings, checked together (a ConfigError says what to change)."""
        from pipeline.analytics import parse_shapes
        from pipeline.analytics.speed import parse_calibration
        from pipeline.tracking import require_trackers, tracker_class

        asked = [f for f, on in (("--line", self.lines), ("--zone", self.zones), ("--events", self.events),
                                 ("--trails", self.trails), ("track_settings", self.track_settings),
                                 ("--calibrate", self.calibrate), ("--reid", self.reid), ("--smooth-boxes", self.smooth_boxes)) if on]
        if self.track == "none" and asked:
            raise ConfigError(f"{asked[0]} (given on the command line or in a preset) needs a tracker: drop --track none, "
                              f"or the {asked[0].lstrip('-')}")
        if self.tracker is not None:
            tracker_class(self.tracker).check_settings(self.track_settings)
            require_trackers()
        parse_shapes(self.lines, self.zones)
        if self.calibrate is not None:
            parse_calibration(self.calibrate)
        if self.reid is not None:
            from pipeline.tracking.reid import make_embedder

            make_embedder(self.reid)

    @property
    def sources(self) -> list[str]:
        return [] if self.source is None else [self.source] if isinstance(self.source, str) else list(self.source)

    def serve_address(self) -> tuple[str, int] | None:
        if self.serve is None:
            return None
        host, _, port = self.serve.rpartition(":")
        return (host.strip("[]") or "127.0.0.1", int(port))


def known_keys() -> list[str]:
    return [f.alias or name for name, f in RunConfig.model_fields.items()]


def explain(err: ValidationError, origin: str, flags: dict[str, str] | None = None) -> str:
    """The first error as one line naming ``origin`` and the key, or for a setting in ``flags``
    (key -> the command-line flag it came from, e.g. conf -> --conf) the flag alone."""
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"]).encode("unicode_escape").decode("ascii") or "(top level)"  # one line, whatever the key
    if e["type"] == "extra_forbidden":
        norm = key.replace("-", "_")
        close = [k for k in known_keys() if norm.startswith(k) or k.startswith(norm)]
        close = close or difflib.get_close_matches(norm, known_keys(), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known_keys())}"
        return f"{origin}: unknown key '{key}': {hint}"
    given = e.get("input")
    shown = "" if isinstance(given, (dict, list)) else f" (got {given!r})"
    hint = ""
    if key.split(".")[0] in ("lines", "zones") and e["type"] == "string_type":
        hint = "; quote each one, e.g. lines: ['gate=0,0.6,1,0.6']"  # YAML splits an unquoted [a=0,1,...] at the commas
    msg = e["msg"].removeprefix("Value error, ")
    if not e["loc"]:  # a rule over several keys
        return f"{origin}: {msg}"
    if e["type"] == "value_error":  # our own message says what was given
        shown = ""
    if flags and str(e["loc"][0]) in flags:
        return f"{flags[str(e['loc'][0])]}: {msg}{shown}"
    return f"{origin}: key '{key}': {msg}{shown}{hint}"


def read_preset(path: str | Path) -> dict:
    """A YAML preset -> a plain dict of settings (not yet validated)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"config file '{p}' not found: give a YAML preset such as configs/default.yaml")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        detail = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line
        raise ConfigError(f"{p}: not valid YAML{line}: {detail}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a preset must be a mapping of key: value, got a {type(data).__name__}")
    return {str(k).replace("-", "_") if str(k) != "json" else "json": v for k, v in data.items()}


def build_config(preset: str | Path | None = None, overrides: dict | None = None, origin: str = "command line",
                 flags: dict[str, str] | None = None) -> RunConfig:
    """Preset values, then overrides (None means 'not given'), validated; errors name ``origin``
    and the key for the overrides, or the flag ``flags`` maps it to (what the user typed: --conf)."""
    values: dict = {}
    if preset is not None:
        values = read_preset(preset)
        for key in CONSENT_KEYS:
            if key in values:  # a preset is a file anyone can hand over: consent comes only from the person running
                raise ConfigError(f"{preset}: '{key}' cannot be set in a preset: give --{key.replace('_', '-')} on the command "
                                  "line, for files you trust")
        try:
            RunConfig.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(explain(exc, str(preset))) from None
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        return RunConfig.model_validate({**values, **given})
    except ValidationError as exc:
        raise ConfigError(explain(exc, origin, {k: f for k, f in (flags or {}).items() if k in given})) from None


def weights_for(spec: str, given: str | None, flag: str = "--weights") -> str | None:
    """``weights`` as ``load_model`` takes it (None: random init); a torchvision spec must say which."""
    if spec.startswith("torchvision:") and given is None:
        raise ConfigError(f"{spec} needs {flag}: a state_dict file, DEFAULT (torchvision's; downloads) or random")
    return None if given == "random" else given
