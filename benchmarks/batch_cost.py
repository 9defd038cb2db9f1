"""A folder of demo-sized recordings as a batch job: one process vs Ray workers, and what each
recording costs beyond its frames (issue 23).

    python benchmarks/batch_cost.py --clips 16 --frames 150 --workers 2 --json benchmarks/results/batch-16-clips-cpu.json

Renders ``--clips`` 1280x720 demo clips (seeds 100, 101, ...) into a temporary folder, then runs
the same job (bundled demo model, JSONL outputs) over them:

- single process (``rtpipe run DIR --out OUT``): model load, job wall time, per recording;
- Ray (``--ray --workers N``, a local instance started by the job): Ray's start, the workers'
  start with their model load, the job's wall time;
- a shell loop, ``rtpipe run FILE --json ...`` per recording (a process, imports and model load each);
- the fixed cost of a recording: the same jobs over ``--clips`` one-frame clips, whose
  time is almost all per-recording overhead (open, sinks, manifest; on Ray the dispatch too).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.timing import machine, report
from pipeline.batch import BatchJob
from pipeline.batch.job import LocalRunner
from pipeline.batch.ray_job import RayRunner
from pipeline.config import build_config
from pipeline.demo.drives import write_drives


def job(folder: Path, out: Path, runner) -> dict:
    started = time.perf_counter()
    summary = BatchJob.create([str(folder)], out, build_config(None, {"model": "demo"})).run(runner, handle_signals=False)
    wall = time.perf_counter() - started
    assert summary.done == summary.total, summary
    walls = [e["wall_s"] for e in (json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines())]
    return {"wall_s": round(wall, 2), "frames": summary.frames, "fps": round(summary.frames / wall, 1),
            "recording_wall_s_sum": round(sum(walls), 2), "recording_wall_s_median": round(sorted(walls)[len(walls) // 2], 3),
            **{k: v for k, v in summary.runner.items() if k != "kind"}}


def shell_loop(folder: Path, out: Path) -> dict:
    """What users do without a batch job: ``for f in DIR/*.mp4; do rtpipe run $f --json ...; done`` (a process per recording)."""
    out.mkdir()
    started = time.perf_counter()
    clips = sorted(folder.glob("*.mp4"))
    for clip in clips:
        subprocess.run([sys.executable, "-m", "pipeline", "run", str(clip), "--json", str(out / f"{clip.stem}.jsonl"), "--quiet"],
                       check=True)
    wall = time.perf_counter() - started
    return {"wall_s": round(wall, 2), "per_recording_s": round(wall / len(clips), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rtpipe-batch-bench-"))
    try:
        started = time.perf_counter()
        clips, short = tmp / "clips", tmp / "short"
        write_drives(clips, args.clips, args.frames)
        write_drives(short, args.clips, 1)
        result = {"clips": args.clips, "frames_each": args.frames, "size": "1280x720", "model": "demo (onnxruntime, cpu)",
                  "render_s": round(time.perf_counter() - started, 1), "machine": machine()}
        result["single"] = job(clips, tmp / "out-single", LocalRunner())
        result["ray"] = job(clips, tmp / "out-ray", RayRunner(workers=args.workers))
        result["ray_vs_single"] = round(result["single"]["wall_s"] / result["ray"]["wall_s"], 2)
        result["shell_loop"] = shell_loop(clips, tmp / "out-loop")
        result["single_vs_shell_loop"] = round(result["shell_loop"]["wall_s"] / result["single"]["wall_s"], 2)
        one = {"single": job(short, tmp / "short-single", LocalRunner()), "ray": job(short, tmp / "short-ray", RayRunner(workers=args.workers))}
        result["per_recording_overhead_ms"] = {  # one-frame recordings: what a recording costs beyond its frames
            "single": round(one["single"]["wall_s"] / args.clips * 1000, 1),
            "ray (dispatch to outcome, 2 at a time)": round(one["ray"]["run_s"] / args.clips * 1000, 1),
            "shell loop (a process per recording)": round(shell_loop(short, tmp / "short-loop")["per_recording_s"] * 1000, 1),
        }
        result["ray_fixed_s"] = {k: one["ray"][k] for k in ("init_s", "ready_s", "shutdown_s")}
        result["one_frame_jobs"] = one
        report(result, args.json)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
