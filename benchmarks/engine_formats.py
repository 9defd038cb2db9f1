"""Engine-only speed of the build formats against torch eager, on this machine.

    python benchmarks/engine_formats.py [--device cpu|cuda] [--out benchmarks/results/engine-formats-cpu.jsonl]

For each model, seeded random weights (speed does not depend on them): build the ONNX and
AOTInductor engines with ``rtpipe build`` (batch 1, fp32; on CUDA also fp16 AOTI), then time
``model.infer`` on one preprocessed 1280x720 frame: median of 30 calls after 5 warm-up calls.
Prints one JSON line per model, with each format's build time from its sidecar.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.build import BuildOptions, build  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.models import rtnet  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402


def models(tmp: Path):
    for imgsz, width in ((320, 32), (640, 64)):
        net = rtnet.build(["car", "pedestrian", "cyclist", "sign"], imgsz=imgsz, width=width)
        yield f"rtnet-seg {imgsz} width {width}", str(rtnet.save(net, tmp / f"rtnet{imgsz}.pt")), None
    yield "torchvision ssdlite320_mobilenet_v3_large", "torchvision:ssdlite320_mobilenet_v3_large", "random"


def median_ms(model, x, calls: int = 30) -> float:
    for _ in range(5):
        model.infer(x)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        model.infer(x)
        times.append(time.perf_counter() - t)
    return round(float(np.median(times)) * 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    image = SyntheticScene(1280, 720, 0).render(0)
    machine = {"cpu": platform.processor() or platform.machine()}
    if args.device.startswith("cuda"):
        import torch

        machine["gpu"] = torch.cuda.get_device_name(0)
    variants = [("onnx", "fp32"), ("aoti", "fp32")] + ([("aoti", "fp16")] if args.device.startswith("cuda") else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, spec, weights in models(tmp):
            w = None if weights == "random" else weights
            row = {"model": label, "device": args.device, **machine}
            ref = load_model(spec, backend="torch", device=args.device, weights=w)
            x = ref.preprocess(image)[0][None]
            row["torch_eager_ms"] = median_ms(ref, x)
            for fmt, precision in variants:
                device = args.device if fmt == "aoti" else "cpu"
                engine = build(spec, BuildOptions(format=fmt, precision=precision, device=device), tmp / "engines", weights=w)
                row[f"{fmt}_{precision}_build_s"] = json.loads(engine.with_suffix(".json").read_text())["build_seconds"]
                model = load_model(str(engine), device=device)
                row[f"{fmt}_{precision}_ms"] = median_ms(model, x)
            row["eager_over_aoti"] = round(row["torch_eager_ms"] / row["aoti_fp32_ms"], 2)
            row["onnxruntime_over_aoti"] = round(row["onnx_fp32_ms"] / row["aoti_fp32_ms"], 2)
            line = json.dumps(row)
            print(line, flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
