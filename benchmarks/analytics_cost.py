"""Speed and heatmap cost per frame at 10 / 100 / 500 tracked objects, on this CPU.

    python benchmarks/analytics_cost.py [--frames 300] [--json benchmarks/results/analytics-cost.json]

Objects are tracked boxes of 20-80 px moving at constant speed with jitter through a 1920x1080
frame (wrapping at the edges: the count stays fixed; every id stays the same). Per frame, medians
after 30 warm-up frames:

- speed: what the track stage adds with ``--calibrate`` (``TrackStage._speed``: the ground
  points through the homography, each track's 1 s least-squares fit, the Detections copied with
  ``speed_kmh``), the tracker itself not included (``benchmarks/tracker_cost.py``);
- heatmap: ``HeatmapSink.write`` (the sink thread's work per frame); its ``close`` (spread,
  colour map, blend, PNG and npy written once at the end) is timed once.

Each is timed in wall time and in the thread's CPU time (``time.thread_time``): on a shared,
loaded machine the CPU time is the cost itself, the wall time adds the waits for a core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

CAL = "0.3,0.6,0.7,0.6,0.9,1,0.1,1=0,30,3.5,30,3.5,5,0,5"


def scene(n: int, frames: int, seed: int = 0):
    from pipeline.types import Detections

    rng = np.random.default_rng(seed)
    size = rng.uniform(20, 80, (n, 2))
    pos = rng.uniform(0, 1, (n, 2)) * [1920, 1080]
    vel = rng.uniform(-6, 6, (n, 2))
    for _ in range(frames):
        pos = (pos + vel + rng.normal(0, 0.5, (n, 2))) % [1920 - 80, 1080 - 80]
        yield Detections(np.concatenate([pos, pos + size], 1), np.full(n, 0.9), np.zeros(n), tracker_id=np.arange(1, n + 1))


def main() -> None:
    from pipeline.analytics.speed import parse_calibration
    from pipeline.runtime.track import TrackStage
    from pipeline.sinks import HeatmapSink
    from pipeline.types import Frame

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    image = np.zeros((1080, 1920, 3), np.uint8)
    rows = []
    for n in (10, 100, 500):
        stage = TrackStage.__new__(TrackStage)  # the speed step alone: no tracker made
        stage.calibration, stage._speeds = parse_calibration(CAL), [None]
        with tempfile.TemporaryDirectory() as tmp:
            sink = HeatmapSink(Path(tmp) / "heat.png")
            speed_ms, heat_ms, speed_cpu, heat_cpu = [], [], [], []
            for k, dets in enumerate(scene(n, args.frames)):
                frame = Frame(image, k, k / 30, 0.0)
                t0, c0 = time.perf_counter(), time.thread_time()
                dets = stage._speed(frame, dets, k / 30)
                t1, c1 = time.perf_counter(), time.thread_time()
                sink.write(frame, dets, None)
                t2, c2 = time.perf_counter(), time.thread_time()
                if k >= 30:
                    speed_ms.append((t1 - t0) * 1000)
                    heat_ms.append((t2 - t1) * 1000)
                    speed_cpu.append((c1 - c0) * 1000)
                    heat_cpu.append((c2 - c1) * 1000)
            t0 = time.perf_counter()
            sink.close(True)
            close_ms = (time.perf_counter() - t0) * 1000
        known = int(np.isfinite(dets.speed_kmh).sum())
        row = {"objects": n, "speed_ms": round(statistics.median(speed_ms), 3), "heatmap_ms": round(statistics.median(heat_ms), 3),
               "both_ms": round(statistics.median(np.add(speed_ms, heat_ms)), 3),
               "speed_cpu_ms": round(statistics.median(speed_cpu), 3), "heatmap_cpu_ms": round(statistics.median(heat_cpu), 3),
               "both_cpu_ms": round(statistics.median(np.add(speed_cpu, heat_cpu)), 3), "heatmap_close_ms": round(close_ms, 1),
               "speeds_known_at_end": known}
        rows.append(row)
        print(f"{n:4d} objects: speed {row['speed_ms']:.3f} ms, heatmap {row['heatmap_ms']:.3f} ms, both {row['both_ms']:.3f} ms "
              f"per frame (CPU time: {row['speed_cpu_ms']:.3f} + {row['heatmap_cpu_ms']:.3f} = {row['both_cpu_ms']:.3f} ms; 1080p); "
              f"heatmap written at the end in {close_ms:.0f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "python benchmarks/analytics_cost.py", "machine": platform.processor() or platform.machine(),
                       "load_average": [round(x, 2) for x in os.getloadavg()],
                       "frame": [1920, 1080], "frames": args.frames, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
