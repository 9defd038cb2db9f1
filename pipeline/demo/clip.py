"""Write a generated clip: the video as H.264 MP4, its ground truth as COCO JSON (with each
object's ``track_id``), as MOTChallenge rows, and the true crossings of the demo's counting line."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2

from pipeline.analytics import parse_shapes
from pipeline.config import ConfigError
from pipeline.demo.scenes import CLASSES, FPS, SEMANTIC, Rendered, Scene
from pipeline.demo.truth import CrossingCounter, mot_rows
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


DEMO_LINES = ["gate=0,0.6,1,0.6"]  # the demo's counting line: across the road, 60 % down the picture


def write_clip(out_dir: str | Path, seed: int, frames: int, size: tuple[int, int] = (1280, 720),
               progress: Callable[[int], None] | None = None, lines: list[str] = DEMO_LINES) -> tuple[Path, Path]:
    """Render ``frames`` frames of the clip ``seed`` -> (``clip.mp4``, ``ground_truth.json``) in ``out_dir``,
    and beside them ``ground_truth_mot.txt`` (MOTChallenge rows) and ``crossings.json`` (the true
    crossings of ``lines``, given as ``--line`` takes them; see ``pipeline.demo.truth``).

    Ground truth images are numbered ``frame_index + 1`` and carry ``frame_index``; every file
    is written under a partial name and renamed once complete. ``ground_truth_semantic/``: each
    frame's semantic label map (``NNNNNN.png`` by frame index, ids as in its ``classes.json``),
    what ``rtpipe eval`` scores a semantic model's class maps against.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video_path, gt_path = out / "clip.mp4", out / "ground_truth.json"
    w, h = size
    video = VideoSink(video_path, Fraction(FPS), crf=16, preset="veryfast")
    images, annotations, mot = [], [], []
    shapes = parse_shapes(lines, [])
    crossings = CrossingCounter(shapes, w, h)
    semantic, semantic_partial = out / "ground_truth_semantic", out / "ground_truth_semantic.partial"
    shutil.rmtree(semantic_partial, ignore_errors=True)
    semantic_partial.mkdir()
    complete = False
    try:
        for i, rendered in enumerate(Scene(seed, w, h).frames(frames)):
            video.write(Frame(rendered.image, i, i / FPS, 0.0), Detections.empty(), None)
            cv2.imwrite(str(semantic_partial / f"{i:06d}.png"), rendered.labels)
            images.append({"id": i + 1, "frame_index": i, "file_name": f"clip.mp4#{i}", "width": w, "height": h})
            annotations += coco_annotations(rendered, i + 1, len(annotations) + 1)
            mot += mot_rows(rendered, i)
            crossings.add(rendered, i)
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
    write_complete(out / "ground_truth_mot.txt", "".join(row + "\n" for row in mot))
    truth = {"lines": [{"name": s.name, "points": [list(p) for p in s.points], "spec": spec} for s, spec in zip(shapes, lines)],
             "counts": crossings.totals(), "events": crossings.events}
    write_complete(out / "crossings.json", json.dumps(truth, indent=1))
    (semantic_partial / "classes.json").write_text(json.dumps({"classes": list(SEMANTIC)}) + "\n", encoding="utf-8")
    shutil.rmtree(semantic, ignore_errors=True)
    semantic_partial.rename(semantic)
    return video_path, gt_path


def check_demo(out: str | Path, frames: int, size: str) -> tuple[int, int]:
    """The demo's settings checked before anything is rendered; returns the clip's (width, height)."""
    if frames < 1:
        raise ConfigError(f"--frames {frames}: give at least 1 frame")
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is a file: give a folder")
    return parse_size(size)


def parse_size(text: str) -> tuple[int, int]:
    """``--size WxH`` -> (width, height): even numbers from 64x64 to 7680x4320."""
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not m or not (64 <= int(m[1]) <= 7680 and 64 <= int(m[2]) <= 4320) or int(m[1]) % 2 or int(m[2]) % 2:
        raise ConfigError(f"--size {text}: give WIDTHxHEIGHT, even numbers from 64x64 to 7680x4320, e.g. 1920x1080")
    return int(m[1]), int(m[2])
