"""``rtpipe bench``: what a model delivers inside the pipeline, measured in one run.

For each configuration, in this order and on the same loaded model: engine only (no I/O),
the sequential baseline (one thread, one frame at a time) and the pipelined run (see
``phases``); ``report`` turns them into ratios, per-stage percentiles and the bottleneck.
Sweeps (``config.expand``) load every model first, so a bad value fails before any timing.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

from pipeline.bench.config import BenchConfig, expand, make_config, parse_sweep
from pipeline.bench.phases import engine_only, make_sinks, pipelined, sample_batch, sequential
from pipeline.bench.report import make_report
from pipeline.bench.system import machine
from pipeline.models import Model, load_model
from pipeline.paths import ModelPath, path_for
from pipeline.sources import open_source

__all__ = ["BenchConfig", "expand", "load", "make_config", "choose_path", "measure", "parse_sweep"]

# phase name, its total steps -> a callback taking the steps done (or None)
PhaseProgress = Callable[[str, int | None], Callable[[int], None] | None]


def load(cfg: BenchConfig) -> Model:
    return load_model(cfg.model, backend=cfg.backend, device=cfg.device, imgsz=cfg.imgsz, weights=cfg.weights,
                      trust_checkpoint=cfg.trust_checkpoint)


def choose_path(model: Model, path: str) -> ModelPath:
    """``--path`` for this model (``pipeline.paths.path_for``); a path this backend cannot take is a settings error."""
    from pipeline.config import ConfigError

    try:
        return path_for(model, path)
    except ValueError as exc:
        raise ConfigError(f"--path {path}: {exc}") from None


def measure(cfg: BenchConfig, model: Model, command: str, progress: PhaseProgress | None = None) -> dict:
    """Engine only, sequential and pipelined runs of ``model`` on ``cfg.source`` -> the report dict."""
    progress = progress or (lambda phase, total: None)
    path = choose_path(model, cfg.path)
    first = open_source(cfg.source, device=cfg.device)
    frames = cfg.frames if first.total is None else min(cfg.frames, first.total)
    batch = sample_batch(first, path, cfg.batch)
    calls = max(math.ceil(frames / cfg.batch), 10)
    engine = engine_only(path, batch, calls, cfg.warmup, progress("engine only", calls))
    names = model.info.names
    with tempfile.TemporaryDirectory(prefix="rtpipe-bench-") as tmp:
        source = open_source(cfg.source, device=cfg.device)
        seq = sequential(source, path, make_sinks(cfg.sink, Path(tmp), "sequential", source, names), frames, cfg.device,
                         progress("sequential", frames))
        source = open_source(cfg.source, device=cfg.device)
        pipe = pipelined(source, path, make_sinks(cfg.sink, Path(tmp), "pipelined", source, names), frames, cfg.batch,
                         cfg.device, progress("pipelined", frames))
    return make_report(cfg.model_dump(exclude={"weights", "trust_checkpoint"}), engine, seq, pipe, command=command,
                       machine=machine(cfg.device))
