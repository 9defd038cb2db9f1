"""Host NMS cost against torchvision's, from 100 to 30,000 candidates (one thread each).

    python benchmarks/nms_cost.py --out benchmarks/results/nms-cost.json

Candidates as a low threshold leaves them on a 1920x1080 frame: small boxes scattered over
the frame (few overlaps, so most survive: the worst case for greedy NMS), 80 classes, IoU 0.7;
a crowded case (boxes piled on 50 objects); and both with one class (a one-class model, or
``agnostic``: every box against every other). Rows: rtpipe's ``batched_nms``
without a limit and with ``max_det`` 300, the previous one-box-per-step loop ("before"),
torchvision's ``batched_nms`` (torch on one thread) and OpenCV's ``NMSBoxesBatched``. Each
is the median of repeated calls; ``ratio`` is rtpipe's time over torchvision's, measured in
the same run. The kept sets are checked equal to torchvision's.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.ops import batched_nms  # noqa: E402


def one_box_per_step(boxes, scores, classes, thr):
    """The previous host NMS: one Python step per kept box (class offsets as batched_nms)."""
    b = boxes.astype(np.float64) + (classes.astype(np.float64) * (float(boxes.max()) + 1.0))[:, None]
    order, area, keep = np.argsort(-scores, kind="stable"), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        wh = np.clip(np.minimum(b[i, 2:], b[rest, 2:]) - np.maximum(b[i, :2], b[rest, :2]), 0, None)
        inter = wh[:, 0] * wh[:, 1]
        order = rest[inter / (area[i] + area[rest] - inter) <= thr]
    return np.asarray(keep)


def candidates(n: int, crowded: bool, nc: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if crowded:
        centres = rng.uniform(100, 1800, (50, 2))[rng.integers(0, 50, n)] + rng.normal(0, 4, (n, 2))
        wh = rng.uniform(60, 80, (n, 2))
        xy = centres - wh / 2
    else:
        xy, wh = rng.uniform(0, 1900, (n, 2)) * [1, 1060 / 1900], rng.uniform(4, 40, (n, 2))
    return (np.hstack([xy, xy + wh]).astype(np.float32), rng.random(n).astype(np.float32),
            rng.integers(0, nc, n))


def timed(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def measure(boxes, scores, classes, thr) -> dict:
    import cv2
    import torch
    from torchvision.ops import batched_nms as tv_batched_nms

    n = len(boxes)
    repeats, once = (3, 1) if n > 5000 else (20, 3)
    tb, ts, tc = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)
    t_tv, want = timed(lambda: tv_batched_nms(tb, ts, tc, thr), repeats)
    t_ours, got = timed(lambda: batched_nms(boxes, scores, classes, thr), repeats)
    t_300, got300 = timed(lambda: batched_nms(boxes, scores, classes, thr, max_det=300), repeats)
    xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).tolist()
    t_cv, _ = timed(lambda: cv2.dnn.NMSBoxesBatched(xywh, scores.tolist(), classes.tolist(), 0.0, thr), once)
    t_before, _ = timed(lambda: one_box_per_step(boxes, scores, classes, thr), once)
    same = sorted(got.tolist()) == sorted(want.numpy().tolist()) and got300.tolist() == got[:300].tolist()
    return {"kept": int(len(got)), "same_kept_set": same, "torchvision_ms": round(t_tv, 3), "rtpipe_ms": round(t_ours, 3),
            "rtpipe_max_det_300_ms": round(t_300, 3), "before_ms": round(t_before, 3), "opencv_ms": round(t_cv, 3),
            "ratio": round(t_ours / t_tv, 3), "ratio_max_det_300": round(t_300 / t_tv, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 8400, 30000])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rng, rows, thr = np.random.default_rng(0), [], 0.7
    for nc, crowded, n in [(nc, crowded, n) for nc in (80, 1) for crowded in (False, True) for n in args.sizes]:
        row = measure(*candidates(n, crowded, nc, rng), thr)
        rows.append({"candidates": n, "classes": nc, "scene": "crowded" if crowded else "scattered", **row})
        print(json.dumps(rows[-1]), flush=True)
    report = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
              "numpy": np.__version__, "torch": torch.__version__, "iou": thr, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if all(r["same_kept_set"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
