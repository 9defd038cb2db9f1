"""End-to-end FPS of the demo job on its own input (generated 1280x720 clip), and the engine alone.

    python benchmarks/demo_fps.py --frames 300 --out benchmarks/results/demo-fps-cpu.jsonl

Renders the demo clip (seed 7), then in one run:

1. engine only: the bundled demo model's ``infer`` on one preprocessed frame, back to back;
2. ``rtpipe run clip.mp4 --model demo`` with what ``rtpipe demo`` writes (annotated MP4 +
   JSONL), and with the JSONL only, each as a subprocess, FPS from its metrics.

Appends one JSON line per configuration; nothing here is a test (timings on shared machines
are noisy). Target from issue 5: >= 25 FPS end to end on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.demo.clip import write_clip  # noqa: E402
from pipeline.demo.scenes import Scene  # noqa: E402
from pipeline.loader import load_model  # noqa: E402


def engine_fps(reps: int = 100) -> float:
    model = load_model("demo")
    x, _ = model.preprocess(next(Scene(7).frames(1)).image)
    x = x[None]
    for _ in range(10):
        model.backend.infer(x)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        model.backend.infer(x)
        times.append(time.perf_counter() - t)
    return 1 / float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--out", type=Path, help="append the results here (JSON lines)")
    args = ap.parse_args()
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip, _ = write_clip(tmp, 7, args.frames)
        rows = [{"config": "engine only (onnxruntime, batch 1, 288x512)", "fps": round(engine_fps(), 1)}]
        for label, outputs in (("annotated mp4 + jsonl (what rtpipe demo writes)", ["--save", tmp / "a.mp4", "--json", tmp / "a.jsonl"]),
                               ("jsonl only", ["--json", tmp / "b.jsonl"])):
            cmd = [sys.executable, "-m", "pipeline", "run", str(clip), "--model", "demo", "--quiet",
                   "--metrics-json", str(tmp / "m.json"), *map(str, outputs)]
            subprocess.run(cmd, check=True)
            m = json.loads((tmp / "m.json").read_text())
            rows.append({"config": label, "fps": m["fps"], "frames": m["frames_out"],
                         "stages_p50_ms": {k: v["p50_ms"] for k, v in m["stages"].items()}})
    for row in rows:
        row.update(input="demo clip seed 7, 1280x720 H.264", frames=row.get("frames", args.frames), **machine,
                   command="python benchmarks/demo_fps.py " + " ".join(sys.argv[1:]))
        row["e2e_over_engine"] = round(row["fps"] / rows[0]["fps"], 3)
        print(json.dumps(row))
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
