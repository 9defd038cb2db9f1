"""The service under load: many live streams on one model, streams added and removed all the
while, events to a webhook. Two phases, one JSON object (also written to --out):

    python benchmarks/serve_load.py --streams 16 --seconds 600 --cycles 200 --out benchmarks/results/serve-load.json

1. ``pause``: --steady streams the CPU can keep up with (--pause-size), their frame intervals
   measured alone (--pause-seconds), then while another stream is added and removed
   --pause-cycles times: a live one (its own load counts too), then one whose camera is down
   (the control plane alone). Reported: interval p50/p99/max in frame periods, and the p99 ratios.
2. ``soak``: --streams live synthetic streams (--size at --fps, with a counting line), the
   bundled demo model shared by all, for --seconds, with --cycles add/remove cycles of one more
   stream spread over the run. RSS, threads and open descriptors are sampled every 5 s; after
   the warm-up (the first fifth, at most 2 minutes) their growth is reported. Per stream: frames
   out and FPS (a starved stream would show ~0); events made, delivered to the webhook and lost.

The Service runs in this process (as ``rtpipe serve`` does, less the HTTP layer) with a
webhook receiver on 127.0.0.1. Exit 1 if a check fails: growth >= 5 %, a stream with no frames
in the last minute, an event not delivered.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bench.system import rss_mb  # noqa: E402
from pipeline.service import Service, ServiceConfig  # noqa: E402
from pipeline.service.outbox import Webhook  # noqa: E402
from tests.conftest import WebhookReceiver  # noqa: E402


class Clock:
    """Per stream name: the monotonic time of every frame out (fed by the service's latency hook)."""

    def __init__(self):
        self.times: dict[str, list[float]] = defaultdict(list)

    def __call__(self, name: str, seconds: float) -> None:
        self.times[name].append(time.monotonic())

    def intervals(self, names, since: float, until: float) -> np.ndarray:
        out = []
        for n in names:
            t = np.array([x for x in self.times[n] if since <= x <= until])
            out.append(np.diff(t))
        return np.concatenate(out) if out else np.array([])


def spec(name: str, size: str, fps: int) -> dict:
    return {"source": f"synthetic:{size}@{fps}", "name": name, "lines": ["mid=0,0.5,1,0.5"]}


def percentiles(x: np.ndarray, period: float) -> dict:
    if len(x) == 0:
        return {"n": 0}
    p50, p99 = np.percentile(x, [50, 99])
    return {"n": int(len(x)), "p50_periods": round(p50 / period, 3), "p99_periods": round(p99 / period, 3),
            "max_periods": round(float(x.max()) / period, 3)}


def pause_phase(args, tmp: Path) -> dict:
    """Frame intervals of the steady streams: alone, then while a live stream is added and removed
    (its own load counts too), then while a stream whose camera is down is (the control plane alone)."""
    service = Service(ServiceConfig(outputs=tmp / "o1", spool=tmp / "s1"), destinations=[])
    clock = Clock()
    service.on_latency = clock
    service.start()
    period = 1 / args.fps
    steady = [f"steady{i}" for i in range(args.steady)]
    for name in steady:
        service.add(spec(name, args.pause_size, args.fps))
    time.sleep(10)  # warm-up
    t0 = time.monotonic()
    time.sleep(args.pause_seconds)
    marks = {"alone": (t0, time.monotonic())}
    extras = {"while_cycling_live": f"synthetic:{args.pause_size}@{args.fps}", "while_cycling_down": "rtsp://127.0.0.1:9/down"}
    seconds = {}
    for label, source in extras.items():
        t1 = time.monotonic()
        for i in range(args.pause_cycles):
            sid = service.add({"source": source, "name": f"extra{i}"})
            time.sleep(0.2)
            service.remove(sid)
        marks[label] = (t1, time.monotonic())
        seconds[label] = round(marks[label][1] - t1, 1)
    service.stop()
    result = {"steady_streams": args.steady, "size": args.pause_size, "cycles": args.pause_cycles, "cycle_seconds": seconds}
    for label, (a, b) in marks.items():
        result[label] = percentiles(clock.intervals(steady, a, b), period)
    for label in extras:
        result[f"{label}_p99_ratio"] = round(result[label]["p99_periods"] / result["alone"]["p99_periods"], 3)
    return result


def sample() -> dict:
    return {"rss_mb": round(rss_mb(), 1), "threads": threading.active_count(), "fds": len(os.listdir("/proc/self/fd"))}


def soak_phase(args, tmp: Path) -> dict:
    receiver = WebhookReceiver()
    service = Service(ServiceConfig(outputs=tmp / "o2", spool=tmp / "s2"), destinations=[Webhook(receiver.url)])
    clock = Clock()
    service.on_latency = clock
    service.start()
    names = [f"cam{i:02d}" for i in range(args.streams)]
    for name in names:
        service.add(spec(name, args.size, args.fps))
    started = time.monotonic()
    samples: list[dict] = []
    every = args.seconds / max(args.cycles, 1)
    next_cycle, next_sample, cycles = started + every, started, 0
    while (now := time.monotonic()) < started + args.seconds:
        if now >= next_sample:
            samples.append({"t": round(now - started, 1), **sample()})
            next_sample += 5
        if now >= next_cycle and cycles < args.cycles:
            service.remove(service.add(spec("extra", args.size, args.fps)), timeout=10)
            cycles += 1
            next_cycle += every
        time.sleep(0.05)
    end = time.monotonic()
    per_stream = {n: {"frames": len(clock.times[n]), "fps": round(len(clock.times[n]) / (end - started), 2),
                      "frames_last_minute": sum(1 for t in clock.times[n] if t > end - 60)} for n in names}
    service.stop()
    time.sleep(1)
    made = service.events
    stats = service.outbox.stats()[0]
    warm = min(args.seconds / 5, 120)
    after = [s for s in samples if s["t"] >= warm]
    first, last = after[0], after[-1]
    growth = {k: round((last[k] - first[k]) / first[k], 4) for k in ("rss_mb", "threads", "fds")}
    fps = [v["fps"] for v in per_stream.values()]
    return {"streams": args.streams, "seconds": args.seconds, "cycles_done": cycles, "size": args.size, "fps_asked": args.fps,
            "warmup_s": warm, "first_after_warmup": first, "last": last, "growth": growth,
            "max_rss_mb": max(s["rss_mb"] for s in samples), "max_threads": max(s["threads"] for s in samples),
            "stream_fps": {"min": min(fps), "max": max(fps), "sum": round(sum(fps), 2)},
            "starved": [n for n, v in per_stream.items() if v["frames_last_minute"] == 0],
            "events": {"made": made, "delivered": len({b["id"] for b in receiver.bodies}),
                       "duplicates": len(receiver.bodies) - len({b["id"] for b in receiver.bodies}),
                       "spooled_at_end": stats["spooled"], "dropped": stats["dropped"]},
            "per_stream": per_stream, "samples": samples}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--steady", type=int, default=2)
    ap.add_argument("--pause-size", default="320x180", help="frame size of the pause phase (small: the CPU keeps up)")
    ap.add_argument("--pause-seconds", type=float, default=30)
    ap.add_argument("--pause-cycles", type=int, default=100)
    ap.add_argument("--phases", nargs="+", choices=("pause", "soak"), default=["pause", "soak"])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                  "command": " ".join(sys.argv)}
        if "pause" in args.phases:
            result["pause"] = pause_phase(args, Path(tmp))
            print(json.dumps(result["pause"]), flush=True)
        if "soak" in args.phases:
            result["soak"] = soak_phase(args, Path(tmp))
    ok = True
    if "soak" in result:
        soak = result["soak"]
        ok = all(v < 0.05 for v in soak["growth"].values()) and not soak["starved"] and \
            soak["events"]["delivered"] == soak["events"]["made"] and soak["events"]["dropped"] == 0
        print(json.dumps({k: v for k, v in soak.items() if k not in ("samples", "per_stream")}, indent=1))
    result["ok"] = ok
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
