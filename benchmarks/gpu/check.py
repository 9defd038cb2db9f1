"""Every GPU check in one run, each step capped in time, one JSON per step (see check.sh).

    python benchmarks/gpu/check.py --out DIR [--dry-run]

Steps (cap in seconds on the GPU; the dry run uses tiny sizes on the CPU):

  env      20   GPU, driver, torch/CUDA, ONNX Runtime providers, PyAV and its CUDA hwaccel
  tests   120   the tests that use CUDA (they skip without it; the dry run: tests/cuda)
  build   120   AOTInductor fp16 engine of the demo checkpoint at 640x640, batch 1..8, with the
                builder's check (the dry run: fp32, CPU, 64x64, batch 1..2)
  bench   110   rtpipe bench on a generated 1080p H.264 clip: path gpu vs cpu, batch 1 and 8
  sources  50   8 x 1080p sources through the engine: aggregate FPS, latency, per-source frames
  decode   40   1080p H.264 frames/s: FFmpeg's CUDA hwaccel vs CPU decoding

A step that fails or runs out of time writes its JSON all the same (status, what it reached,
the tail of its output) and the run goes on; summary.json lists every step's status and time.
The exit code is 0 when every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CAPS = {"env": 20, "tests": 120, "build": 120, "bench": 110, "sources": 50, "decode": 40}
GPU_TESTS = ["tests/cuda", "tests/paths", "tests/backends", "tests/preprocess", "tests/overlay", "tests/ops",
             "tests/runtime/test_track.py"]
CKPT = REPO / "pipeline/models/assets/demo-seg.pt"


class Sizes:
    """What the steps work on: the GPU's sizes, or the dry run's tiny ones on the CPU."""

    def __init__(self, dry: bool):
        self.dry = dry
        self.device = "cpu" if dry else "cuda"
        self.clip_size, self.clip_frames = ((192, 108), 12) if dry else ((1920, 1080), 240)
        self.imgsz, self.batches = (64, (1, 2)) if dry else (640, (1, 8))
        self.precision = "fp32" if dry else "fp16"
        self.bench_frames = 8 if dry else 200
        self.sources = 2 if dry else 8
        self.tests = ["tests/cuda"] if dry else GPU_TESTS


def python(*args: str, cap: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python3 ARGS`` in the repo, output captured; TimeoutExpired keeps what it printed."""
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=cap,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def tail(text: str | bytes | None, n: int = 3000) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "")[-n:]


# ---- steps: each returns its result dict (status "ok" or raises) ------------------------------


def step_env(s: Sizes, work: Path, cap: float) -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        import torch

        out |= {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            out |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                    "multiprocessors": props.multi_processor_count}
    except ImportError:
        out["torch"] = None
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        out["nvidia_smi"] = smi.stdout.strip() or tail(smi.stderr, 300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        out["nvidia_smi"] = f"not available ({exc.__class__.__name__})"
    import av
    import onnxruntime

    out["onnxruntime"] = {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}
    try:
        from av.codec.hwaccel import hwdevices_available

        devices = list(hwdevices_available())
    except ImportError:
        devices = []
    out["pyav"] = {"version": av.__version__, "ffmpeg": av.library_versions.get("libavcodec"), "hwdevices": devices,
                   "cuda_hwaccel": "cuda" in devices}
    for name in ("pydantic", "pycocotools", "trackers", "supervision"):
        try:
            from importlib.metadata import version

            out.setdefault("packages", {})[name] = version(name)
        except Exception:  # noqa: BLE001 - reported, not fatal here
            out.setdefault("packages", {})[name] = None
    if not s.dry and not out.get("cuda_available"):
        raise StepFailed("torch sees no CUDA GPU", out)
    return out


def step_tests(s: Sizes, work: Path, cap: float) -> dict:
    args = ["-m", "pytest", "-v", "-p", "no:cacheprovider", "-o", "addopts=", *s.tests]
    try:
        r = python(*args, cap=cap)
        text, timed_out = r.stdout + r.stderr, False
    except subprocess.TimeoutExpired as exc:
        text, timed_out = tail(exc.stdout, 10**7) + tail(exc.stderr, 10**7), True
    results = re.findall(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)", text, re.M)
    counts: dict[str, int] = {}
    for _, outcome in results:
        counts[outcome.lower()] = counts.get(outcome.lower(), 0) + 1
    out = {"selected": s.tests, "counts": counts, "failed": [t for t, o in results if o in ("FAILED", "ERROR")],
           "skip_reasons": sorted(set(re.findall(r" SKIPPED \((.+)\)\s*$", text, re.M)))[:20], "tail": tail(text)}
    if timed_out:
        raise StepFailed(f"tests ran past {cap:.0f} s after {len(results)} results", out, timeout=True)
    if out["failed"] or not results:
        raise StepFailed(f"{len(out['failed'])} failed" if results else "no test ran", out)
    return out


def step_build(s: Sizes, work: Path, cap: float) -> dict:
    batch = f"1:{s.batches[-1]}:{s.batches[-1]}"
    r = python("-m", "pipeline", "build", str(CKPT), "--format", "aoti", "--precision", s.precision, "--device", s.device,
               "--imgsz", str(s.imgsz), "--batch", batch, "-o", str(work / "engines"), "--name", "demo-aoti", cap=cap)
    engine = work / "engines" / "demo-aoti.pt2"
    out = {"checkpoint": CKPT.name, "format": "aoti", "precision": s.precision, "device": s.device, "imgsz": s.imgsz,
           "batch": batch, "tail": tail(r.stdout + r.stderr)}
    if r.returncode != 0 or not engine.exists():
        raise StepFailed(f"rtpipe build exited {r.returncode}", out)
    out["sidecar"] = json.loads(engine.with_suffix(".json").read_text())
    out["engine_mb"] = round(engine.stat().st_size / 2**20, 2)
    return out


def clip_for(s: Sizes, work: Path) -> Path:
    """The generated H.264 clip the later steps read (made once)."""
    clip = work / "clip" / "clip.mp4"
    if not clip.exists():
        from pipeline.demo.clip import write_clip

        write_clip(clip.parent, 7, s.clip_frames, s.clip_size, lines=[])
    return clip


def engine_for(work: Path) -> Path:
    engine = work / "engines" / "demo-aoti.pt2"
    if not engine.exists():
        raise StepFailed("no engine: the build step did not make one", {})
    return engine


def step_bench(s: Sizes, work: Path, cap: float) -> dict:
    clip, engine = clip_for(s, work), engine_for(work)
    report = work / "bench.json"
    sweep = ["path=gpu,cpu", "batch=" + ",".join(map(str, s.batches))]
    r = python("-m", "pipeline", "bench", str(clip), "--model", str(engine), "--backend", "aoti", "--device", s.device,
               "--frames", str(s.bench_frames), "--warmup", "3", "--sweep", *sweep, "--json", str(report), "--quiet", cap=cap)
    if r.returncode != 0 or not report.exists():
        raise StepFailed(f"rtpipe bench exited {r.returncode}", {"tail": tail(r.stdout + r.stderr)})
    return json.loads(report.read_text())


def step_sources(s: Sizes, work: Path, cap: float) -> dict:
    clip, engine = clip_for(s, work), engine_for(work)
    metrics = work / "sources-metrics.json"
    r = python("-m", "pipeline", "run", *[str(clip)] * s.sources, "--model", str(engine), "--backend", "aoti", "--device", s.device,
               "--batch", str(s.sources), "--metrics-json", str(metrics), "--quiet", cap=cap)
    if r.returncode != 0 or not metrics.exists():
        raise StepFailed(f"rtpipe run exited {r.returncode}", {"tail": tail(r.stdout + r.stderr)})
    m = json.loads(metrics.read_text())
    return {"sources": s.sources, "clip": list(s.clip_size), "aggregate_fps": round(m["fps"], 1), "frames_out": m["frames_out"],
            "e2e_latency_ms": m["e2e_latency"], "per_source": [{k: x.get(k) for k in ("frames_in", "frames_out", "drops")}
                                                                 for x in m["sources"]],
            "batches": m["batches"], "stages": m["stages"], "path": m["path"],
            "note": "latency percentiles are over every source together; rtpipe's metrics do not split them per source"}


def step_decode(s: Sizes, work: Path, cap: float) -> dict:
    clip = clip_for(s, work)
    code = ("import json, sys, time, warnings; from pipeline.sources import open_source\n"
            "src = open_source(sys.argv[1], device=sys.argv[2]); t0 = time.perf_counter(); n = 0\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    for f in src.frames(): n += 1\n"
            "took = time.perf_counter() - t0\n"
            "print(json.dumps({'frames': n, 'fps': round(n / took, 1), 'hwaccel': src.describe().get('hwaccel'),\n"
            "                  'warning': ' | '.join(str(x.message) for x in w) or None}))")
    out = {"clip": list(s.clip_size), "frames": s.clip_frames, "cpus": os.cpu_count()}
    for device in ("cpu",) if s.dry else ("cpu", "cuda"):  # the dry run has no CUDA to ask FFmpeg for
        r = python("-c", code, str(clip), device, cap=cap / 2)
        if r.returncode != 0:
            raise StepFailed(f"decoding on {device} failed", {**out, "tail": tail(r.stderr)})
        out[device] = json.loads(r.stdout.strip().splitlines()[-1])
    if not s.dry and out["cuda"]["hwaccel"] != "cuda":
        out["note"] = "FFmpeg's CUDA hwaccel was not used: the 'cuda' row decoded on the CPU"
    return out


class StepFailed(Exception):
    def __init__(self, why: str, partial: dict, timeout: bool = False):
        super().__init__(why)
        self.partial, self.timeout = partial, timeout


STEPS = {"env": step_env, "tests": step_tests, "build": step_build, "bench": step_bench, "sources": step_sources,
         "decode": step_decode}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the JSON files (on a lent machine: $OUT)")
    ap.add_argument("--dry-run", action="store_true", help="the same steps on the CPU with tiny sizes (CI)")
    args = ap.parse_args()
    s, out = Sizes(args.dry_run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    caps = {k: v * (3 if s.dry else 1) for k, v in CAPS.items()}  # the CI machine is slower than the GPU machine's 16 cores
    print(f"gpu check{' (dry run, CPU, tiny sizes)' if s.dry else ''}: budget {sum(caps.values()):.0f} s: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in caps.items()), flush=True)
    summary, started = {"dry_run": s.dry, "steps": {}}, time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rtpipe-gpu-check-") as tmp:
        for name, step in STEPS.items():
            t0 = time.monotonic()
            try:
                result = {"status": "ok", **step(s, Path(tmp), caps[name])}
            except StepFailed as exc:
                result = {"status": "timeout" if exc.timeout else "failed", "why": str(exc), **exc.partial}
            except subprocess.TimeoutExpired as exc:
                result = {"status": "timeout", "why": f"ran past its {caps[name]:.0f} s cap", "tail": tail(exc.stdout)}
            except Exception as exc:  # noqa: BLE001 - a broken step is reported, the next one runs
                result = {"status": "failed", "why": f"{exc.__class__.__name__}: {exc}"}
            took = round(time.monotonic() - t0, 1)
            result = {"step": name, "seconds": took, "cap_s": caps[name], **result}
            (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
            summary["steps"][name] = {"status": result["status"], "seconds": took, "cap_s": caps[name],
                                      **({"why": result["why"]} if "why" in result else {})}
            print(f"[{time.monotonic() - started:6.1f} s] {name:8s} {result['status']:8s} {took:6.1f} s of {caps[name]:.0f}"
                  + (f"  ({result['why']})" if "why" in result else ""), flush=True)
    summary["seconds"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if all(v["status"] == "ok" for v in summary["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
