"""Run metrics as data: per-stage latency percentiles, throughput, queues, drops, end to end."""

from __future__ import annotations

import threading
import time

import numpy as np

from pipeline.text import safe


class LatencyStats:
    """Latency samples in milliseconds; the newest ``keep`` are kept in a fixed ring buffer,
    so a run of any length uses the same memory."""

    def __init__(self, keep: int = 65536):
        self._buf = np.full(keep, np.nan)  # written now, so its memory is resident from the start (flat RSS)
        self._lock = threading.Lock()
        self.count = 0
        self.total_ms = 0.0

    def add(self, ms: float) -> None:
        with self._lock:
            self._buf[self.count % len(self._buf)] = ms
            self.count += 1
            self.total_ms += ms

    def last(self) -> float | None:
        return None if self.count == 0 else float(self._buf[(self.count - 1) % len(self._buf)])

    def summary(self) -> dict:
        with self._lock:
            data = self._buf[: min(self.count, len(self._buf))].copy()
            count, total = self.count, self.total_ms
        if count == 0:
            return {"count": 0, "mean_ms": None, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
        p50, p95, p99 = np.percentile(data, [50, 95, 99])
        return {
            "count": count, "mean_ms": round(total / count, 3), "p50_ms": round(float(p50), 3),
            "p95_ms": round(float(p95), 3), "p99_ms": round(float(p99), 3), "max_ms": round(float(data.max()), 3),
        }


class RunMetrics:
    """Everything a run measures. Stages and queues register themselves by name."""

    def __init__(self):
        self.stages: dict[str, LatencyStats] = {}
        self.e2e = LatencyStats()         # capture -> written by the sinks
        self.to_overlay = LatencyStats()  # capture -> drawn (what a viewer sees)
        self.queues: dict[str, object] = {}  # name -> StageQueue (has .stats())
        self.frames_in = 0
        self.frames_out = 0
        self.source_drops = 0
        self.started = time.monotonic()
        self.ended: float | None = None
        self._out_times: list[float] = []  # sink times of the last few frames, for the HUD

    def stage(self, name: str) -> LatencyStats:
        return self.stages.setdefault(name, LatencyStats())

    def frame_out(self, captured_at: float) -> None:
        now = time.monotonic()
        self.frames_out += 1
        self.e2e.add((now - captured_at) * 1000)
        self._out_times.append(now)
        if len(self._out_times) > 30:
            del self._out_times[0]

    def recent_fps(self) -> float | None:
        t = self._out_times
        return None if len(t) < 2 or t[-1] == t[0] else (len(t) - 1) / (t[-1] - t[0])

    def dropped(self) -> int:
        """Frames dropped so far (by the sources and the newest-only queues), without the percentiles ``to_dict`` computes."""
        return self.source_drops + sum(q.stats()["drops"] for q in self.queues.values())

    def to_dict(self) -> dict:
        end = self.ended or time.monotonic()
        wall = max(end - self.started, 1e-9)
        queues = {name: q.stats() for name, q in self.queues.items()}
        dropped = self.source_drops + sum(q["drops"] for q in queues.values())
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "dropped": dropped,
            "source_drops": self.source_drops,
            "wall_s": round(wall, 3),
            "fps": round(self.frames_out / wall, 3),
            "stages": {name: s.summary() for name, s in self.stages.items()},
            "e2e_latency": self.e2e.summary(),
            "overlay_latency": self.to_overlay.summary(),
            "queues": queues,
        }


def render_table(metrics: dict):
    """A rich Table of a metrics dict (the same dict ``Pipeline.run`` returns)."""
    from rich.table import Table

    def f(v):
        return "-" if v is None else f"{v:.1f}"

    title = (
        f"{metrics['frames_out']} frames in {metrics['wall_s']:.2f} s · {metrics['fps']:.1f} FPS · "
        f"dropped {metrics['dropped']}" + (" · interrupted" if metrics.get("interrupted") else "")
    )
    source = metrics.get("source") or {}
    if source.get("gaps"):
        title += f" · {len(source['gaps'])} reconnect(s), {source['gap_s']:.1f} s without frames"
    if source.get("corrupt_packets"):
        title += f" · {source['corrupt_packets']} damaged packet(s) skipped"
    if source.get("missing_frames"):
        title += f" · {source['missing_frames']} declared frame(s) missing (truncated?)"
    if source.get("unreadable"):
        title += f" · {source['unreadable']} unreadable image(s) skipped"
    if source.get("damaged"):
        title += f" · {source['damaged']} damaged image(s) processed"
    sources = metrics.get("sources") or []
    caption = None
    if len(sources) > 1:
        caption = "\n".join(
            f"source {i} {safe(s['uri'])}: {s['frames_out']}/{s['frames_in']} frames out" + (f", {s['drops']} dropped" if s.get("drops") else "")
            + (f", FAILED: {safe(s['error'])}" if s.get("error") else "") for i, s in enumerate(sources))
    b = metrics.get("batches")
    if b and metrics.get("batch", 1) > 1:
        title += f" · batches of {b['mean_size']:.1f} (cut at deadline {b['cut_at_deadline']}×)"
    table = Table(title=title, caption=caption)
    for col in ("stage", "count", "mean ms", "p50 ms", "p95 ms", "p99 ms", "queue in (mean/max/cap)"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, s in [*metrics["stages"].items(), ("end to end", metrics["e2e_latency"])]:
        q = metrics["queues"].get(name)
        qtext = "" if q is None else f"{q['mean_depth']:.1f}/{q['max_depth']}/{q['capacity']}" + (f" drop {q['drops']}" if q["drops"] else "")
        table.add_row(name, str(s["count"]), f(s["mean_ms"]), f(s["p50_ms"]), f(s["p95_ms"]), f(s["p99_ms"]), qtext)
    return table


def render_counts(metrics: dict):
    """A rich Table of the lines' and zones' totals (per class), or None when none were set."""
    from rich.table import Table

    tracking = metrics.get("tracking")
    if not tracking or not tracking["shapes"]:
        return None
    tracks = sum(tracking["tracks"])
    table = Table(title=f"{tracking['tracker']}: {tracks} tracks · lines and zones")
    for col in ("line / zone", "event", "all", "per class"):
        table.add_column(col, justify="right" if col == "all" else "left")
    events = {"line": ("line_in", "line_out"), "zone": ("zone_enter", "zone_exit")}
    for shape in tracking["shapes"]:
        counted = tracking["counts"].get(shape["name"], {})
        for event in events[shape["kind"]]:
            per = counted.get(event, {"all": 0})
            table.add_row(safe(shape["name"]), event, str(per["all"]), ", ".join(f"{safe(k)} {v}" for k, v in per.items() if k != "all"))
    return table
