"""Which backend is faster for a checkpoint on this machine: torch eager vs ONNX Runtime.

    python benchmarks/backend_choice.py

For each model: load time (ONNX Runtime includes the in-memory export) and the median of 10
``model.infer`` calls on one preprocessed 1280x720 frame. Random weights (speed does not
depend on them). This is what ``--backend auto`` is based on. Prints one JSON line per model.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.loader import load_model  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402

MODELS = [
    ("torchvision:ssdlite320_mobilenet_v3_large", None),
    ("torchvision:retinanet_resnet50_fpn", 384),
    ("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", None),
]


def main() -> None:
    warnings.simplefilter("ignore")  # random weights warn
    image = SyntheticScene(1280, 720, 0).render(0)
    for spec, imgsz in MODELS:
        row = {"model": spec, "imgsz": imgsz}
        for backend in ("torch", "onnxruntime"):
            t = time.perf_counter()
            model = load_model(spec, backend=backend, imgsz=imgsz)
            row[f"{backend}_load_s"] = round(time.perf_counter() - t, 2)
            x = model.preprocess(image)[0][None]
            model.infer(x)
            times = []
            for _ in range(10):
                t = time.perf_counter()
                model.infer(x)
                times.append(time.perf_counter() - t)
            row[f"{backend}_infer_ms"] = round(float(np.median(times)) * 1000, 1)
        row["torch_over_onnxruntime"] = round(row["torch_infer_ms"] / row["onnxruntime_infer_ms"], 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
