"""Pipelined end-to-end FPS vs the model's standalone FPS, in one run.

    python benchmarks/pipeline_efficiency.py --size 1920x1080 --frames 300 --imgsz 640 --width 96 [--save]

Makes an H.264 clip of the synthetic scene, builds a random-init yolo-seg network of the given
input size and width (heavier than the bundled stand-in, so that the model dominates), then:

1. standalone: ``model.infer`` on one preprocessed tensor, back to back -> X FPS;
2. pipelined: ``Pipeline`` on the clip (decode -> ... -> JSONL, and the annotated MP4 with
   --save) -> end-to-end FPS, and efficiency = e2e / X.

Prints one JSON object; nothing here is a test (timings on shared machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.models import load_model  # noqa: E402
from pipeline.models.tiny import build  # noqa: E402
from pipeline.runtime import Pipeline  # noqa: E402
from pipeline.sinks import JsonlSink, VideoSink  # noqa: E402
from pipeline.sources import SyntheticScene, open_source  # noqa: E402


def make_clip(path: Path, w: int, h: int, frames: int, fps: int = 30) -> None:
    scene = SyntheticScene(w, h, seed=1)
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "23"}
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(scene.render(i), format="bgr24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--width", type=int, default=96, help="channels of the random network (its cost)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--save", action="store_true", help="also write the annotated H.264 video")
    args = ap.parse_args()
    w, h = map(int, args.size.lower().split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip, onnx_path = tmp / "clip.mp4", tmp / "model.onnx"
        make_clip(clip, w, h, args.frames)
        build(str(onnx_path), imgsz=args.imgsz, width=args.width)
        model = load_model(str(onnx_path))

        first = next(open_source(str(clip)).frames())
        tensor, _ = model.preprocess(first.image)
        batch = tensor[None].repeat(args.batch, 0)
        for _ in range(5):
            model.infer(batch)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 10 and n < 200:
            model.infer(batch)
            n += 1
        engine_fps = n * args.batch / (time.perf_counter() - t0)

        source = open_source(str(clip))
        sinks = [JsonlSink(tmp / "out.jsonl", model.metadata.names)]
        if args.save:
            sinks.append(VideoSink(tmp / "out.mp4", source.fps))
        metrics = Pipeline(source, model, sinks, batch=args.batch).run(handle_sigint=False)

    result = {
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "clip": f"{w}x{h} H.264, {args.frames} frames",
        "model": f"random yolo-seg, imgsz {args.imgsz}, width {args.width}, batch {args.batch}",
        "engine_fps": round(engine_fps, 2),
        "e2e_fps": metrics["fps"],
        "efficiency": round(metrics["fps"] / engine_fps, 3),
        "frames_out": metrics["frames_out"],
        "stages_p50_ms": {k: v["p50_ms"] for k, v in metrics["stages"].items()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
