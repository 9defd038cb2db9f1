"""Several sources through one model: aggregate FPS of ``rtpipe run A A A ...`` against one source.

Runs ``rtpipe run`` with the same clip given N times (each copy is its own source with its own
outputs) for each (sources, batch) pair and records the aggregate frames per second, the
batches the infer stage made and per-source frame counts, each with its exact command.

    python benchmarks/multistream.py CLIP --runs 1x1 4x1 4x4 --json benchmarks/results/multistream-cpu.json
    python benchmarks/multistream.py clip1080.mp4 --model engine.pt2 --device cuda --runs 1x8 8x8 --json gpu.json

RUNS are SOURCESxBATCH. Extra arguments after ``--`` go to every ``rtpipe run``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


def one(clip: str, sources: int, batch: int, extra: list[str], folder: Path) -> dict:
    metrics = folder / f"m-{sources}x{batch}.json"
    cmd = ["rtpipe", "run", *[clip] * sources, "--batch", str(batch), "--json", str(folder / f"d-{sources}x{batch}.jsonl"),
           "--metrics-json", str(metrics), "--quiet", *extra]
    done = subprocess.run([sys.executable, "-m", "pipeline", *cmd[1:]], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed: {done.stderr.strip()}")
    m = json.loads(metrics.read_text())
    return {"command": shlex.join(cmd), "sources": sources, "batch": batch, "fps": m["fps"], "frames_out": m["frames_out"],
            "wall_s": m["wall_s"], "batches": m["batches"], "path": m["path"], "per_source_frames": [s["frames_out"] for s in m["sources"]],
            "e2e_latency_ms": {k: m["e2e_latency"][k] for k in ("p50_ms", "p95_ms", "p99_ms")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip")
    ap.add_argument("--runs", nargs="+", default=["1x1", "4x1", "4x4"], help="SOURCESxBATCH pairs (default 1x1 4x1 4x4)")
    ap.add_argument("--json", dest="out", help="write the results here")
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    results = []
    with tempfile.TemporaryDirectory(prefix="rtpipe-multistream-") as tmp:
        for run in args.runs:
            n, b = (int(v) for v in run.lower().split("x"))
            r = one(args.clip, n, b, extra, Path(tmp))
            results.append(r)
            print(f"{n} source(s), batch {b}: {r['fps']:.1f} FPS aggregate ({r['fps'] / n:.1f} per source), "
                  f"batches of {r['batches']['mean_size']:.2f}, capture->sink p50 {r['e2e_latency_ms']['p50_ms']:.0f} ms")
    base = results[0]["fps"]
    for r in results:
        r["vs_first"] = round(r["fps"] / base, 3)
    if args.out:
        Path(args.out).write_text(json.dumps({"command": shlex.join(["python", *sys.argv]), "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
