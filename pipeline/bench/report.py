"""The benchmark report (a JSON-ready dict) and its tables.

Ratios come from measurements taken in the same run: efficiency = pipelined end-to-end FPS /
engine-only FPS; pipelining gain = pipelined / sequential FPS. The bottleneck is the stage
that is busy longest per frame in the pipelined run: with a thread per stage, throughput
cannot beat one frame per that time (for a live source, ``grab`` waits on the camera, so a
``grab`` bottleneck means the source's own rate). ``cpu_bound_fps`` spreads the sequential
run's CPU time per frame over every core: no schedule of that work is faster, which caps
both ratios (``ceilings``). When other programs kept the cores busy during the pipelined run,
the report says so and blames no stage: every stage then waits for the CPU.
"""

from __future__ import annotations

from pipeline.bench.system import Usage
from pipeline.text import safe

PERCENTILES = ("p50_ms", "p95_ms", "p99_ms")
OTHERS_SHARE = 0.25  # other processes used at least this share of the cores (not background noise) ...
FULL_SHARE = 0.8    # ... and the machine as a whole at least this share: the run competed for the CPU


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _percentiles(summary: dict) -> dict:
    return {k: summary[k] for k in PERCENTILES}


def stage_table(metrics: dict) -> dict:
    """Per stage: p50/p95/p99 of one call, mean, calls, and busy time per frame out (ms)."""
    out = {}
    frames = max(metrics["frames_out"], 1)
    for name, s in metrics["stages"].items():
        busy = None if s["count"] == 0 else round(s["count"] * s["mean_ms"] / frames, 3)
        out[name] = {**_percentiles(s), "mean_ms": s["mean_ms"], "calls": s["count"], "busy_ms_per_frame": busy}
    return out


def bottleneck(stages: dict, e2e_fps: float, cores_busy: float | None, cores: int | None,
               machine_cores_busy: float | None = None) -> dict | None:
    """What holds the pipelined run back.

    ``stage``: the stage busy longest per frame, and that time against the frame interval.
    ``limit``: "cpu" when the process kept >= 90 % of the cores busy (then every stage is
    slowed by the others and ``stage`` is only the largest user); "machine" when other
    processes used >= ``OTHERS_SHARE`` of the cores and the whole machine >= ``FULL_SHARE``
    (every stage waited for the CPU they took: ``stage`` is not to blame and the figures are
    pessimistic); else "stage". ``machine_cores_busy``: the whole machine's CPU time as cores
    busy, this process included (None: unknown, the machine is not judged).
    """
    busy = {k: v["busy_ms_per_frame"] for k, v in stages.items() if v["busy_ms_per_frame"] is not None}
    if not busy:
        return None
    name = max(busy, key=busy.get)
    interval = 1000 / e2e_fps if e2e_fps else None
    cpu_bound = cores_busy is not None and cores is not None and cores_busy >= 0.9 * cores
    others = None if machine_cores_busy is None or cores_busy is None else round(max(machine_cores_busy - cores_busy, 0.0), 3)
    contended = others is not None and cores is not None and others >= OTHERS_SHARE * cores and machine_cores_busy >= FULL_SHARE * cores
    return {"stage": name, "busy_ms_per_frame": busy[name], "frame_interval_ms": None if interval is None else round(interval, 3),
            "share_of_interval": None if interval is None else round(busy[name] / interval, 3),
            "cores_busy": cores_busy, "other_cores_busy": others, "cores": cores,
            "limit": "cpu" if cpu_bound else "machine" if contended else "stage"}


def make_report(config: dict, engine: dict, sequential: tuple[dict, Usage], pipelined: tuple[dict, Usage], *,
                command: str, machine: dict) -> dict:
    """Everything one configuration measured, with the ratios and the bottleneck.

    engine: ``phases.engine_only``'s dict; sequential, pipelined: (metrics dict, Usage) of those runs.
    """
    from pipeline.sources import redact

    (seq, seq_use), (pipe, use) = sequential, pipelined
    source = str(config.get("source", ""))
    config, command = {**config, "source": redact(source)}, command.replace(source, redact(source))  # no credentials
    e2e_fps, seq_fps, engine_fps = pipe["fps"], seq["fps"], engine["fps"]
    stages = stage_table(pipe)
    produced = pipe["frames_in"] + pipe["source_drops"]  # frames the source made while the run took frames
    infer_p50 = stages["infer"]["p50_ms"]
    cores = machine.get("cores")
    # The sequential run's CPU time per frame, spread over every core: no schedule of the same
    # work can go faster (decoders and engines that use several threads count in full).
    cpu_bound = round(cores * seq_fps / seq_use.cores_busy, 3) if cores and seq_use.cores_busy else None
    return {
        "command": command,
        "machine": machine,
        "config": config,
        "source": pipe["source"],
        "model": pipe["model"],
        "engine_fps": engine_fps,
        "sequential_fps": seq_fps,
        "e2e_fps": e2e_fps,
        "efficiency": _ratio(e2e_fps, engine_fps),
        "pipelining_gain": _ratio(e2e_fps, seq_fps),
        "cpu_bound_fps": cpu_bound,
        "ceilings": None if cpu_bound is None else {"efficiency": _ratio(min(cpu_bound, engine_fps), engine_fps),
                                                    "pipelining_gain": _ratio(cpu_bound, seq_fps)},
        "frames": pipe["frames_out"],
        "detections_per_frame": seq["detections_per_frame"],
        "dropped_frames": pipe["dropped"],
        "dropped_fraction": _ratio(pipe["dropped"], produced) if produced else 0.0,
        "peak_rss_mb": use.rss_mb,
        "peak_rss_scope": use.rss_scope,
        "peak_gpu_mem_mb": use.gpu_mb,
        "cpu_cores_busy": use.cores_busy,
        "machine_cores_busy": use.machine_cores_busy,
        "stages": stages,
        "latency_ms": {"capture_to_overlay": _percentiles(pipe["overlay_latency"]),
                       "capture_to_sink": _percentiles(pipe["e2e_latency"])},
        "bottleneck": bottleneck(stages, e2e_fps, use.cores_busy, cores, use.machine_cores_busy),
        "engine": {"calls": engine["calls"], "batch": engine["batch"], "fps_wall": engine["fps_wall"],
                   "latency_ms": _percentiles(engine["latency_ms"]),
                   "infer_in_pipeline_over_alone": _ratio(infer_p50, engine["latency_ms"]["p50_ms"]) if infer_p50 else None},
        "sequential": {"frames": seq["frames_out"], "wall_s": seq["wall_s"], "dropped_frames": seq["dropped"],
                       "cpu_cores_busy": seq_use.cores_busy, "machine_cores_busy": seq_use.machine_cores_busy, "peak_rss_mb": seq_use.rss_mb,
                       "stages": stage_table(seq), "latency_ms": {"capture_to_sink": _percentiles(seq["e2e_latency"])}},
        "pipelined": {"wall_s": pipe["wall_s"], "queues": pipe["queues"]},
    }


def _f(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _ceiling(report: dict, key: str) -> str:
    c = report["ceilings"]
    return "" if c is None else f"; at most {_f(c[key], 2)} on {report['machine']['cores']} cores"


def render_report(report: dict):
    """Two rich Tables: the measurements and ratios, then the stages of both runs."""
    from rich.table import Table

    cfg, bn, eng = report["config"], report["bottleneck"], report["engine"]
    title = (f"{safe(report['model']['path'])} ({report['model']['backend']}, batch {cfg['batch']}) on {safe(cfg['source'])}: "
             f"{report['frames']} frames, {report['detections_per_frame']} detections a frame, sink {cfg['sink']}")
    summary = Table(title=title, show_header=False)
    summary.add_column(justify="left")
    summary.add_column(justify="right")
    summary.add_column(justify="left", style="dim")
    lat = report["latency_ms"]
    rows = [
        ("engine only", f"{_f(report['engine_fps'])} FPS", f"p50 {_f(eng['latency_ms']['p50_ms'])} ms a call, no I/O"),
        ("sequential", f"{_f(report['sequential_fps'])} FPS", "one thread, one frame at a time"),
        ("pipelined", f"{_f(report['e2e_fps'])} FPS", "a thread per stage"),
        ("efficiency", _f(report["efficiency"], 3), "pipelined / engine only" + _ceiling(report, "efficiency")),
        ("pipelining gain", _f(report["pipelining_gain"], 3), "pipelined / sequential" + _ceiling(report, "pipelining_gain")),
        ("dropped", f"{report['dropped_frames']} ({100 * (report['dropped_fraction'] or 0):.1f} %)", "of the frames the source made"),
        ("capture → overlay", "/".join(_f(lat["capture_to_overlay"][k]) for k in PERCENTILES), "ms p50/p95/p99"),
        ("capture → sink", "/".join(_f(lat["capture_to_sink"][k]) for k in PERCENTILES), "ms p50/p95/p99"),
        ("peak RSS", f"{_f(report['peak_rss_mb'])} MB", "pipelined run"),
    ]
    if report["peak_gpu_mem_mb"] is not None:
        rows.append(("peak GPU memory", f"{_f(report['peak_gpu_mem_mb'])} MB", "torch's CUDA allocator"))
    others = bn and bn["other_cores_busy"]
    rows.append(("CPU", f"{_f(report['cpu_cores_busy'], 2)} cores busy", f"of {report['machine']['cores']}; sequential "
                 f"{_f(report['sequential']['cpu_cores_busy'], 2)}" + ("" if others is None else f"; other processes {_f(others, 2)}")))
    if bn:
        busy = f"{bn['stage']} busy {_f(bn['busy_ms_per_frame'], 2)} ms of each {_f(bn['frame_interval_ms'], 2)} ms frame"
        held = {"cpu": ("the CPU", f"all cores busy; largest user: {busy}"),
                "machine": ("other programs", f"the cores were busy with their work; largest stage: {busy}")}
        rows.append(("held back by", *held.get(bn["limit"], (bn["stage"], busy))))
        if bn["limit"] == "machine":
            summary.caption = (f"The machine was busy with other work: {_f(others, 2)} of {bn['cores']} cores used by other processes; "
                               "figures are pessimistic.")
    for row in rows:
        summary.add_row(*row)
    stages = Table(title="stages: ms per call, and busy ms per frame")
    for col in ("stage", "p50", "p95", "p99", "busy/frame", "sequential busy/frame"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    seq = report["sequential"]["stages"]
    for name, s in report["stages"].items():
        mark = " ◀" if bn and bn["limit"] != "machine" and name == bn["stage"] else ""
        stages.add_row(name + mark, _f(s["p50_ms"]), _f(s["p95_ms"]), _f(s["p99_ms"]), _f(s["busy_ms_per_frame"], 2),
                       _f(seq[name]["busy_ms_per_frame"], 2))
    return summary, stages


def _held_back(bn: dict | None) -> str:
    return "-" if bn is None else {"cpu": "CPU", "machine": "other load"}.get(bn["limit"], bn["stage"])


def render_sweep(reports: list[dict], labels: list[str]):
    """One row per configuration, readable at 80 columns (a pipe, a log): no vertical rules, short
    headers explained in the caption, the configuration wrapped (never cut), dropped frames only
    when some configuration dropped any."""
    from rich import box
    from rich.table import Table

    drops = any(r["dropped_frames"] for r in reports)
    busy = any(r["bottleneck"] and r["bottleneck"]["limit"] == "machine" for r in reports)
    caption = ("FPS: engine only, sequential, pipelined; efficiency: pipelined / engine only; gain: pipelined / sequential; "
               "latency: capture to sink, ms p50/p95" + ("; other load: the machine was busy with other work, figures are pessimistic"
                                                         if busy else ""))
    table = Table(title=f"{len(reports)} configurations on {safe(reports[0]['config']['source'])}", caption=caption,
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("config", overflow="fold")  # the only column that gives way: wrapped at spaces, long names folded
    for col in ("engine\nFPS", "seq.\nFPS", "pipe.\nFPS", "effi-\nciency", "gain", "latency\nms", *(["dropped"] if drops else [])):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("held\nback by", no_wrap=True)
    for label, r in zip(labels, reports):
        lat = r["latency_ms"]["capture_to_sink"]
        table.add_row(label, _f(r["engine_fps"]), _f(r["sequential_fps"]), _f(r["e2e_fps"]), _f(r["efficiency"], 3),
                      _f(r["pipelining_gain"], 3), f"{_f(lat['p50_ms'])}/{_f(lat['p95_ms'])}", *([str(r["dropped_frames"])] if drops else []),
                      _held_back(r["bottleneck"]))
    return table
