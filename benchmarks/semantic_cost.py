"""Semantic segmentation's host costs per 1080p frame: overlay, class-map writing, fitting, decoding.

    python benchmarks/semantic_cost.py [--repeat 30] [--out results/semantic-cost-1080p.json]

A 1920x1080 frame and a class map shaped like a road scene (sky, road, sidewalks, lane marks,
a few dozen object blobs; 8 classes) at torchvision's 520 short side (520x924), and:

1. fit: the frame resized as the segmentation preset does (antialiased uint8 resize to 520x924);
2. decode: the 520x924 map scaled to the frame (nearest-exact) -> ClassMap;
3. overlay: ClassMapAnnotator (tint + legend) on the frame;
4. write: the JSONL record's class map (per class: area + COCO RLE) and its JSON text.

Prints one JSON object with medians in ms (one thread's work each). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import machine, median_ms, report  # noqa: E402
from pipeline.models.semantic import SemanticDecoder, describe  # noqa: E402
from pipeline.overlay.host import ClassMapAnnotator  # noqa: E402
from pipeline.preprocess.host import prepare  # noqa: E402
from pipeline.sinks import JsonlSink  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402
from pipeline.types import FitTransform  # noqa: E402

FRAME_HW, MAP_HW = (1080, 1920), (520, 924)


def road_map(rng: np.random.Generator) -> np.ndarray:
    """(520, 924) uint8: sky 1, road 2, sidewalks 3, lane marks 4, 40 blobs of classes 5-7, background 0."""
    h, w = MAP_HW
    ids = np.zeros((h, w), np.uint8)
    ids[: h * 2 // 5] = 1
    yy, xx = np.mgrid[0:h, 0:w]
    horizon = h * 2 // 5
    road = (yy > horizon) & (np.abs(xx - w / 2) < (yy - horizon) * 1.6)
    ids[road] = 2
    ids[(yy > horizon) & ~road] = 3
    for x in range(w // 2 - 4, w // 2 + 4):
        ids[horizon + 20 :: 40, x] = 4
    for _ in range(40):
        cy, cx, r = rng.integers(horizon, h), rng.integers(0, w), rng.integers(5, 40)
        ids[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(5, 8)
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    frame = SyntheticScene(FRAME_HW[1], FRAME_HW[0], 3).render(5)
    meta = describe("deeplabv3_mobilenet_v3_large")  # 520 short side; its names
    fit = meta.fit
    small = road_map(rng)
    t = FitTransform(FRAME_HW, MAP_HW, MAP_HW[1] / FRAME_HW[1], MAP_HW[0] / FRAME_HW[0], 0, 0)
    decode = SemanticDecoder(meta)
    dets = decode({"class_map": small[None]}, [t])[0]
    overlay = ClassMapAnnotator(meta.names)
    sink = JsonlSink("/dev/null", meta.names)
    record = sink.class_map(dets.class_map)
    result = {
        "frame": list(FRAME_HW), "map": list(MAP_HW), "classes": len(dets.class_map.areas()), "repeat": args.repeat,
        "fit_ms": median_ms(lambda: prepare(frame, fit), args.repeat),
        "decode_ms": median_ms(lambda: decode({"class_map": small[None]}, [t]), args.repeat),
        "overlay_ms": median_ms(lambda: overlay.annotate(frame.copy(), dets), args.repeat),
        "write_ms": median_ms(lambda: json.dumps(sink.class_map(dets.class_map), separators=(",", ":")), args.repeat),
        "jsonl_bytes_per_frame": len(json.dumps(record, separators=(",", ":"))),
        "machine": machine(),
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
