"""Write a generated clip: the video as H.264 MP4 and its ground truth as COCO JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from pipeline.demo.scenes import CLASSES, FPS, Rendered, Scene
from pipeline.ops import rle_encode_crop
from pipeline.sinks import VideoSink, write_complete
from pipeline.types import Detections, Frame


def coco_annotations(rendered: Rendered, image_id: int, first_id: int) -> list[dict]:
    """One frame's instances as COCO annotations (category ids 1..4, visible box and RLE mask)."""
    h, w = rendered.owner.shape
    out = []
    for k, inst in enumerate(rendered.instances):
        x1, y1, x2, y2 = inst.box
        out.append({"id": first_id + k, "image_id": image_id, "category_id": inst.category + 1, "track_id": inst.id,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": inst.area, "iscrowd": int(inst.crowd),
                    "segmentation": rle_encode_crop(inst.crop, x1, y1, (h, w))})
    return out


def write_clip(out_dir: str | Path, seed: int, frames: int, size: tuple[int, int] = (1280, 720),
               progress: Callable[[int], None] | None = None) -> tuple[Path, Path]:
    """Render ``frames`` frames of the clip ``seed`` -> (``clip.mp4``, ``ground_truth.json``) in ``out_dir``.

    Ground truth images are numbered ``frame_index + 1`` and carry ``frame_index``; both files
    are written under a partial name and renamed once complete.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video_path, gt_path = out / "clip.mp4", out / "ground_truth.json"
    w, h = size
    video = VideoSink(video_path, Fraction(FPS), crf=16, preset="veryfast")
    images, annotations = [], []
    complete = False
    try:
        for i, rendered in enumerate(Scene(seed, w, h).frames(frames)):
            video.write(Frame(rendered.image, i, i / FPS, 0.0), Detections.empty(), None)
            images.append({"id": i + 1, "frame_index": i, "file_name": f"clip.mp4#{i}", "width": w, "height": h})
            annotations += coco_annotations(rendered, i + 1, len(annotations) + 1)
            if progress is not None:
                progress(i + 1)
        complete = True
    finally:
        video.close(complete)
    gt = {"info": {"description": f"rtpipe generated driving clip, seed {seed}, {frames} frames at {w}x{h}",
                   "generator": "pipeline.demo.scenes", "seed": seed, "fps": FPS},
          "images": images, "annotations": annotations,
          "categories": [{"id": k + 1, "name": name} for k, name in enumerate(CLASSES)]}
    write_complete(gt_path, json.dumps(gt, separators=(",", ":")))
    return video_path, gt_path
