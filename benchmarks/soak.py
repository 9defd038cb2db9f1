"""Soak: a live synthetic camera through the whole pipeline for a long time, watching memory and file descriptors.

    python benchmarks/soak.py --seconds 1800 --out benchmarks/results/soak-30min.json

The bundled demo model on ``synthetic:640x360@30`` (live, paced at 30 FPS), drawing every
frame and writing the detections as JSONL (to a temporary folder). RSS and open file
descriptors are sampled every second. After the warm-up (the first fifth of the run, at most
5 minutes), RSS may grow less than --max-growth (5 %) and descriptors not at all; the script
prints one JSON object (also written to --out) and exits 1 when the check fails.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bench.system import rss_mb  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.runtime import Pipeline  # noqa: E402
from pipeline.sinks import JsonlSink, Sink  # noqa: E402
from pipeline.sources import open_source  # noqa: E402


class Drawn(Sink):
    """Asks for the annotated image (so the overlay stage draws every frame) and drops it."""

    needs_image = True

    def write(self, frame, detections, image) -> None:
        pass


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1800)
    ap.add_argument("--source", default="synthetic:640x360@30")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--max-growth", type=float, default=0.05, help="allowed RSS growth after warm-up (fraction)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    warmup = min(args.seconds / 5, 300)
    model = load_model(args.model)
    samples: list[tuple[float, float, int]] = []  # (seconds since start, RSS MB, open fds)
    with tempfile.TemporaryDirectory() as tmp:
        pipe = Pipeline(open_source(args.source), model, [Drawn(), JsonlSink(Path(tmp) / "soak.jsonl", model.info.names)])
        stop = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while not stop.wait(1.0):
                samples.append((round(time.monotonic() - started, 1), round(rss_mb(), 2), open_fds()))
                if samples[-1][0] >= args.seconds:
                    pipe.drain()
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        metrics = pipe.run(handle_sigint=False)
        stop.set()
        sampler.join()
    after = [s for s in samples if s[0] >= warmup]
    base_rss, base_fds = after[0][1], after[0][2]
    peak_rss, peak_fds = max(s[1] for s in after), max(s[2] for s in after)
    growth = (peak_rss - base_rss) / base_rss
    step = max(1, len(samples) // 120)  # keep about 120 samples in the report
    result = {
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "source": args.source, "model": args.model, "seconds": metrics["wall_s"], "warmup_s": warmup,
        "frames_out": metrics["frames_out"], "fps": metrics["fps"], "dropped": metrics["dropped"],
        "rss_after_warmup_mb": base_rss, "rss_peak_after_warmup_mb": peak_rss, "rss_end_mb": samples[-1][1],
        "rss_growth": round(growth, 4), "max_growth": args.max_growth,
        "fds_after_warmup": base_fds, "fds_peak_after_warmup": peak_fds, "fds_end": samples[-1][2],
        "passed": growth < args.max_growth and peak_fds <= base_fds,
        "samples_s_rss_fds": samples[::step],
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
