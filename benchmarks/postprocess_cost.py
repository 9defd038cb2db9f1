"""Postprocess cost per frame at 1080p, and mask assembly as a share of a yolo-seg engine at 640.

    python benchmarks/postprocess_cost.py [--model yolo-seg-640.onnx] [--repeat 30]

1. YOLO-seg decode for 100 detections at 1920x1080: raw outputs of the 640 input layout
   (8400 candidates, 32 prototypes of 160x160) built so that exactly 100 boxes of 40-400 px
   survive NMS; timed as a whole, then split into NMS and mask assembly.
2. Mask R-CNN mask paste for 100 detections (28x28 masks) at 1080p.
3. The engine: ``model.infer`` on one 640x640 tensor, back to back. Default engine: a
   random-init yolo-seg network at 640 (``pipeline.models.tiny``, width 256); ``--model`` takes
   any yolo-seg ONNX with a 640 input (e.g. an Ultralytics yolo11n-seg export).

Prints one JSON object with medians in ms and the ratio mask assembly / engine. Nothing here
is a test: timings on shared machines are noisy, the ratio is taken within one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.loader import load_model  # noqa: E402
from pipeline.models.decoder import DecodeSettings  # noqa: E402
from pipeline.models.yolo import DenseDecoder  # noqa: E402
from pipeline.ops import batched_nms, masks_from_prototypes, paste_masks  # noqa: E402
from pipeline.preprocess.host import letterbox  # noqa: E402

FRAME_HW, INPUT, N_CAND, N_DET, NC, NM = (1080, 1920), 640, 8400, 100, 80, 32


def median_ms(fn, repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def yolo_outputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """output0 (1, 4+80+32, 8400): 100 well-separated boxes scoring 0.5-0.95, each repeated by
    near-duplicates NMS removes, and background candidates under the threshold."""
    out = np.zeros((1, 4 + NC + NM, N_CAND), np.float32)
    out[0, 4 : 4 + NC] = rng.uniform(0, 0.2, (NC, N_CAND))  # below conf 0.25
    grid = [(x, y) for y in range(10) for x in range(10)]
    for k in range(N_DET * 5):  # each detection and 4 near-duplicates
        i = k % N_DET
        gx, gy = grid[i]
        size = 10 + 60 * ((i * 37) % 10) / 10  # 10-64 px in the input: 30-190 px in the frame
        jitter = (k // N_DET) * 0.2
        out[0, :4, k] = (32 + gx * 64 + jitter, 170 + gy * 32 + jitter, size, size * 0.8)  # inside the 16:9 content
        out[0, 4 + (i % NC), k] = 0.95 - 0.004 * i - 0.01 * (k // N_DET)
        out[0, 4 + NC :, k] = rng.normal(0.5, 0.5, NM)  # masks covering most of their box
    protos = rng.normal(0.3, 1, (1, NM, INPUT // 4, INPUT // 4)).astype(np.float32)
    return {"output0": out, "output1": protos}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="yolo-seg ONNX with a 640x640 input (default: random-init tiny builder at width 256)")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    _, meta = letterbox(np.zeros((*FRAME_HW, 3), np.uint8), (INPUT, INPUT))
    outputs = yolo_outputs(rng)
    decoder = DenseDecoder(NC, DecodeSettings(conf=0.25, iou=0.45))
    dets = decoder(outputs, [meta])[0]
    assert len(dets) == N_DET, f"the synthetic outputs gave {len(dets)} detections, not {N_DET}"

    # the decoder's two parts, on the same candidates
    pred = outputs["output0"][0]
    scores = pred[4 : 4 + NC].max(0)
    idx = np.flatnonzero(scores > 0.25)
    cx, cy, w, h = pred[:4, idx]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    cls = pred[4 : 4 + NC, idx].argmax(0)
    keep = batched_nms(boxes, scores[idx], cls, 0.45)
    coef, xyxy = pred[4 + NC :, idx[keep]].T, meta.to_frame(boxes[keep])
    scale, pad = (meta.scale_x, meta.scale_y), (meta.pad_x, meta.pad_y)

    result = {
        "frame": f"{FRAME_HW[1]}x{FRAME_HW[0]}", "detections": N_DET, "candidates_over_conf": int(len(idx)),
        "yolo_decode_total_ms": median_ms(lambda: decoder(outputs, [meta]), args.repeat),
        "nms_ms": median_ms(lambda: batched_nms(boxes, scores[idx], cls, 0.45), args.repeat),
        "mask_assembly_ms": median_ms(
            lambda: masks_from_prototypes(coef, outputs["output1"][0], xyxy, FRAME_HW, (INPUT, INPUT), scale, pad), args.repeat
        ),
        "mean_box_px": float(np.mean((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])) ** 0.5),
    }
    rcnn_masks = rng.random((N_DET, 28, 28)).astype(np.float32)
    result["maskrcnn_paste_ms"] = median_ms(lambda: paste_masks(rcnn_masks, xyxy, FRAME_HW), args.repeat)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            from pipeline.models.tiny import build

            path = str(Path(tmp) / "seg640.onnx")
            build(path, seed=0, imgsz=INPUT, width=256)
        model = load_model(path)
        if model.info.input_hw != (INPUT, INPUT):
            sys.exit(f"--model must have a {INPUT}x{INPUT} input, found {model.info.input_hw}")
        x = model.preprocess(np.zeros((*FRAME_HW, 3), np.uint8))[0][None]
        result["engine"] = "tiny builder, width 256" if args.model is None else Path(args.model).name
        result["engine_ms"] = median_ms(lambda: model.infer(x), max(10, args.repeat // 2))
    result["mask_assembly_over_engine"] = result["mask_assembly_ms"] / result["engine_ms"]
    result["postprocess_over_engine"] = result["yolo_decode_total_ms"] / result["engine_ms"]
    result["machine"] = f"{platform.machine()}, {__import__('os').cpu_count()} cores"
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()
