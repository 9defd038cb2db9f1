"""Tracker cost per frame at 10 / 100 / 500 objects, on this CPU: median, p99 and worst frame.

    python benchmarks/tracker_cost.py [--frames 300] [--json benchmarks/results/tracker-cost.json]

Objects are boxes of 20-80 px moving at constant speed with jitter through a 1920x1080 frame
(they wrap around at the edges, so the count stays fixed), scores 0.3-1.0, 5 % of detections
missed each frame. Times are of ``update()`` per frame after 30 warm-up frames, for each tracker
rtpipe offers with its default settings: as rtpipe calls it (our Detections in and out:
conversion and the score-following thresholds included), the same with appearance
re-identification (``--reid hist``, on a noise picture), and the library's own ``update`` on
supervision detections (median only).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np


def scene(n: int, frames: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    size = rng.uniform(20, 80, (n, 2))
    pos = rng.uniform(0, 1, (n, 2)) * [1920, 1080]
    vel = rng.uniform(-6, 6, (n, 2))
    score = rng.uniform(0.3, 1.0, n)
    cls = rng.integers(0, 4, n)
    for _ in range(frames):
        pos = (pos + vel + rng.normal(0, 0.5, (n, 2))) % [1920, 1080]
        keep = rng.random(n) > 0.05
        xyxy = np.concatenate([pos, pos + size], 1)[keep]
        yield xyxy.astype(np.float32), score[keep].astype(np.float32), cls[keep].astype(np.int32)


def timed(update, frames) -> dict:
    """Median, p99 and worst ms per frame after 30 warm-up frames."""
    times = []
    for k, args in enumerate(frames):
        t0 = time.perf_counter()
        update(k, *args)
        if k >= 30:
            times.append((time.perf_counter() - t0) * 1000)
    return {"p50": round(statistics.median(times), 3), "p99": round(float(np.percentile(times, 99)), 3), "max": round(max(times), 3)}


def main() -> None:
    import supervision as sv

    from pipeline.tracking import make_tracker
    from pipeline.types import Detections

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    picture = np.random.default_rng(1).integers(0, 255, (1080 + 80, 1920 + 80, 3), np.uint8)  # boxes wrap past the edge
    for name in ("botsort", "bytetrack"):
        for n in (10, 100, 500):
            ours = make_tracker(name, {}, 30)
            ms_ours = timed(lambda k, b, s, c, t=ours: t.update(Detections(b, s, c), k / 30), scene(n, args.frames))
            reid = make_tracker(name, {}, 30, reid="hist")
            ms_reid = timed(lambda k, b, s, c, t=reid: t.update(Detections(b, s, c), k / 30, picture), scene(n, args.frames))
            lib = type(ours._tracker)(frame_rate=30, **ours.library_settings)  # the same tracker, called directly
            ms_lib = timed(lambda k, b, s, c, t=lib: t.update(sv.Detections(xyxy=b.astype(np.float64), confidence=s, class_id=c),
                                                              timestamp=k / 30), scene(n, args.frames))
            rows.append({"tracker": name, "objects": n, "rtpipe_ms": ms_ours, "reid_hist_ms": ms_reid, "library_ms": ms_lib["p50"]})
            print(f"{name:9s} {n:4d} objects, ms per frame p50/p99/max: rtpipe {ms_ours['p50']:.3f}/{ms_ours['p99']:.3f}/"
                  f"{ms_ours['max']:.3f}, with --reid hist {ms_reid['p50']:.3f}/{ms_reid['p99']:.3f}/{ms_reid['max']:.3f}, "
                  f"the library alone p50 {ms_lib['p50']:.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "python benchmarks/tracker_cost.py", "machine": platform.processor() or platform.machine(),
                       "frames": args.frames, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
