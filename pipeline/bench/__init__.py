"""``rtpipe bench``: what a model delivers inside the pipeline, measured in one run.

For each configuration, in this order and on the same loaded model: engine only (no I/O),
the sequential baseline (one thread, one frame at a time) and the pipelined run (see
``phases``); ``report`` turns them into ratios, per-stage percentiles and the bottleneck.
Sweeps (``config.expand``) load every model first, so a bad value fails before any timing.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.bench.config import BenchConfig, expand, make_config, parse_sweep
from pipeline.bench.phases import engine_only, make_sinks, pipelined, sample_batch, sequential
from pipeline.bench.report import make_report
from pipeline.bench.system import machine
from pipeline.config import weights_for
from pipeline.loader import load_model
from pipeline.models import Model
from pipeline.paths import ModelPath, path_for
from pipeline.sinks import write_complete
from pipeline.sources import open_source

__all__ = ["BenchConfig", "check_outputs", "choose_path", "expand", "load", "make_config", "measure", "parse_sweep", "run"]

# phase name, its total steps -> a callback taking the steps done (or None)
PhaseProgress = Callable[[str, int | None], Callable[[int], None] | None]


@dataclass
class BenchRun:
    """What ``run`` measured: the configurations, their labels, one report each, and the result to write
    (the report itself, or for a sweep {command, machine, sweep, configs})."""

    configs: list[BenchConfig]
    labels: list[str]
    reports: list[dict]
    result: dict

    def write(self, json_path: str | Path | None, plot_path: str | Path | None) -> None:
        """The result as JSON and the plot (throughput and latency per configuration), each written whole or not at all."""
        if json_path:
            write_complete(json_path, json.dumps(self.result, indent=2) + "\n")
        if plot_path:
            from pipeline.bench.plot import save_plot
            from pipeline.sources import redact

            m = self.reports[0]["machine"]
            title = f"{redact(self.configs[0].source)} · {m['cpu']}, {m['cores']} cores" + (f" · {m['gpu']}" if m["gpu"] else "")
            save_plot(self.reports, self.labels, plot_path, title)


def check_outputs(json_path: str | None, plot_path: str | None, overwrite: bool = False) -> None:
    """Before any timing: output files in existing folders, not sharing a path, not there already
    (unless ``overwrite``); matplotlib there for a plot."""
    from pipeline.config import ConfigError

    given = [Path(p).expanduser() for p in (json_path, plot_path) if p is not None]
    for p in given:
        if p.is_dir() or not p.parent.is_dir():
            raise ConfigError(f"output '{p}': give a file name in an existing folder")
        if not overwrite and (p.exists() or p.is_symlink()):
            raise ConfigError(f"output '{p}' exists: give --overwrite to replace it, or another path")
    if len({p.resolve() for p in given}) != len(given):
        raise ConfigError("--json and --plot share one path: give them different files")
    if plot_path:
        from pipeline.bench.plot import require_matplotlib

        require_matplotlib()


def run(base: dict, sweep: list[str] | None, command: str, progress: PhaseProgress | None = None,
        flags: dict[str, str] | None = None) -> BenchRun:
    """Measure ``base`` settings (BenchConfig's keys), or every combination ``--sweep`` terms make
    of them. Every model is loaded (and its path checked) before any timing, so a bad value fails
    in seconds, not after hours. ``progress(label, total)`` is called per loading step and phase.
    ``flags``: key -> the command-line flag a base value came from, so its error names the flag."""
    progress = progress or (lambda phase, total: None)
    axes = parse_sweep(sweep) if sweep else {}
    configs = expand(base, axes, flags) if axes else [make_config(base, flags=flags)]
    for cfg in configs:
        weights_for(cfg.model, cfg.weights)  # a torchvision spec must say which weights
    labels = [c.label(tuple(axes)) for c in configs] if axes else [configs[0].label()]
    models: dict[tuple, Model] = {}
    for cfg in configs:
        if _model_key(cfg) not in models:
            progress(f"loading {cfg.model} ({cfg.backend}, {cfg.device}, imgsz {cfg.imgsz or 'default'})", None)
            models[_model_key(cfg)] = load(cfg)
        choose_path(models[_model_key(cfg)], cfg.path)
    reports = [measure(cfg, models[_model_key(cfg)], command,
                       lambda phase, total, label=label: progress(f"{label}: {phase}" if axes else phase, total))
               for cfg, label in zip(configs, labels)]
    result = reports[0]
    if axes:
        result = {"command": command, "machine": machine(configs[0].device), "sweep": axes,
                  "configs": [{"label": label, **r} for label, r in zip(labels, reports)]}
    return BenchRun(configs, labels, reports, result)


def _model_key(cfg: BenchConfig) -> tuple:
    """What makes a different model; batch, sink and path do not."""
    return (cfg.model, cfg.backend, cfg.device, cfg.imgsz, cfg.rect, cfg.conf, cfg.iou, cfg.max_det,
            None if cfg.classes is None else tuple(cfg.classes), cfg.nms)


def load(cfg: BenchConfig) -> Model:
    return load_model(cfg.model, backend=cfg.backend, device=cfg.device, imgsz=cfg.imgsz, rect=cfg.rect, conf=cfg.conf, iou=cfg.iou,
                      max_det=cfg.max_det, classes=cfg.classes, nms=cfg.nms, weights=weights_for(cfg.model, cfg.weights),
                      trust_checkpoint=cfg.trust_checkpoint, trust_engine=cfg.trust_engine)


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
    return make_report(cfg.model_dump(exclude={"weights", "trust_checkpoint", "trust_engine"}), engine, seq, pipe, command=command,
                       machine=machine(cfg.device))
