"""Benchmark settings, validated, and ``--sweep KEY=V1,V2`` expanded into one setting per combination."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.backends import BACKENDS
from pipeline.config import MAX_DET, ConfigError, Device, InputSize, explain

SINKS = ("none", "jsonl", "video")
SWEEPABLE = ("model", "backend", "device", "batch", "imgsz", "rect", "sink", "path")


class BenchConfig(BaseModel):
    """One configuration to measure. ``sink``: what the timed runs write (to a temporary folder):
    nothing, the detections as JSONL, or the annotated H.264 video and the JSONL. ``path``:
    where pre- and post-processing run (auto: on the GPU when the model does; cpu; gpu)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    model: str = "demo"
    backend: Literal[BACKENDS] = "auto"  # type: ignore[valid-type]
    device: Device = "cpu"
    batch: int = Field(1, ge=1, le=256)
    imgsz: InputSize | None = None
    rect: bool = True  # checkpoints: inputs fitted to each frame's shape, not the whole fixed input
    conf: float = Field(0.25, ge=0.0, le=1.0)  # these four and nms decode as rtpipe run's settings of the same names do
    iou: float = Field(0.45, ge=0.0, le=1.0)
    max_det: int = Field(300, ge=1, le=MAX_DET)
    classes: list[int] | None = None
    nms: bool = False
    frames: int = Field(300, ge=1)
    warmup: int = Field(10, ge=0)
    sink: Literal[SINKS] = "jsonl"  # type: ignore[valid-type]
    path: Literal["auto", "cpu", "gpu"] = "auto"
    weights: str | None = None
    trust_checkpoint: bool = False
    trust_engine: bool = False

    def label(self, keys: tuple[str, ...] = ("model", "backend", "batch")) -> str:
        """``key=value`` for the given keys: how a configuration is named in tables and plots."""
        return " ".join(f"{k}={getattr(self, k)}" for k in keys)


def make_config(values: dict, origin: str = "command line", flags: dict[str, str] | None = None) -> BenchConfig:
    try:
        return BenchConfig(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(explain(exc, origin, flags)) from None


def parse_sweep(terms: list[str]) -> dict[str, list[str]]:
    """``["batch=1,2", "backend=onnxruntime,aoti"]`` -> ``{"batch": ["1", "2"], "backend": [...]}``."""
    axes: dict[str, list[str]] = {}
    for term in terms:
        key, sep, values = term.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not values.strip(","):
            raise ConfigError(f"--sweep '{term}': write KEY=V1,V2,... e.g. batch=1,2,4")
        if key not in SWEEPABLE:
            raise ConfigError(f"--sweep '{term}': '{key}' cannot be swept; choose from {', '.join(SWEEPABLE)}")
        if key in axes:
            raise ConfigError(f"--sweep: '{key}' is given twice; list all its values in one KEY=V1,V2 term")
        axes[key] = [v.strip() for v in values.split(",") if v.strip()]
    return axes


def expand(base: dict, axes: dict[str, list[str]], flags: dict[str, str] | None = None) -> list[BenchConfig]:
    """Every combination of the swept values over the base settings, in the order given, validated
    (the base first, so a bad flag is named as the flag, not as a swept configuration)."""
    make_config({k: v for k, v in base.items() if k not in axes}, flags=flags)
    configs = []
    for combo in itertools.product(*axes.values()):
        over = dict(zip(axes, combo))
        configs.append(make_config({**base, **over}, origin=f"--sweep {' '.join(f'{k}={v}' for k, v in over.items())}"))
    return configs
