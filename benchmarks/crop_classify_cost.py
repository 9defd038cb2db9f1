"""A classifier on every detection's crop (--classify-crops): cost per 1080p frame at 10 and 50 detections.

    python benchmarks/crop_classify_cost.py [--arch mobilenet_v3_small] [--repeat 10] [--out results/crop-classify-cost.json]

A 1920x1080 road scene with N boxes of 40-300 px; the classify stage (crop, the classifier's
preset fit, batched inference on ONNX Runtime, top-1) timed whole, and split into fitting the
crops and the model. Random weights (the cost does not depend on them). Prints one JSON object
with medians in ms. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import machine, median_ms, report  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.paths import Item  # noqa: E402
from pipeline.runtime.classify import CropClassifier  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402
from pipeline.types import Detections, Frame  # noqa: E402


def measure(stage: CropClassifier, model, frame: np.ndarray, n: int, rng: np.random.Generator, repeat: int) -> dict:
    xy = rng.uniform((0, 300), (1600, 1000), (n, 2))
    wh = rng.uniform(40, 300, (n, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, (1920, 1080))], 1).astype(np.float32)

    def run():
        stage.apply([Item(Frame(frame, 0, 0.0, 0.0), detections=Detections(boxes, np.full(n, 0.9), np.zeros(n)))])

    crops = [frame[y1:y2, x1:x2] for x1, y1, x2, y2 in CropClassifier.regions(boxes, (1080, 1920))]
    batch = np.stack([model.preprocess(c)[0] for c in crops])
    return {"detections": n, "classify_ms": median_ms(run, repeat),
            "fit_crops_ms": median_ms(lambda: [model.preprocess(c) for c in crops], repeat),
            "model_ms": median_ms(lambda: model.infer(batch), repeat)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mobilenet_v3_small")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(f"torchvision:{args.arch}")
    stage = CropClassifier(model)
    frame = SyntheticScene(1920, 1080, 3).render(5)
    rng = np.random.default_rng(0)
    rows = [measure(stage, model, frame, n, rng, args.repeat) for n in (10, 50)]
    result = {"arch": args.arch, "backend": model.info.backend, "input": list(model.info.input_hw), "frame": [1080, 1920],
              "rows": rows, "repeat": args.repeat, "machine": machine()}
    report(result, args.out)


if __name__ == "__main__":
    main()
