"""Training samples for the demo model: generated frames fitted like the pipeline fits them.

Each sample is one frame of a generated clip, letterboxed exactly as ``rtpipe run`` does it,
with its targets in network-input pixels: boxes, classes, soft instance masks at prototype
resolution (the fraction of each prototype cell the instance covers) and the ``iscrowd``
flag. Frames are drawn from several clips at once, so a batch mixes scenes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.demo.scenes import Rendered, Scene
from pipeline.preprocess.host import letterbox

TRAIN_SEED_BASE = 1_000_000  # training clips use seeds from here up; demo and test clips stay below


@dataclass
class Sample:
    image: np.ndarray   # (H, W, 3) uint8 BGR, network input size
    boxes: np.ndarray   # (K, 4) float32 xyxy, input pixels
    classes: np.ndarray  # (K,) int64
    crowd: np.ndarray   # (K,) bool
    masks: np.ndarray   # (K, H/4, W/4) float32 in 0..1


def sample(frame: Rendered, input_hw: tuple[int, int], flip: bool = False) -> Sample:
    """One generated frame -> a training sample for a network of input ``input_hw``."""
    image, meta = letterbox(frame.image, input_hw)
    ih, iw = input_hw
    h, w = frame.owner.shape
    nw, nh = int(round(w * meta.scale_x)), int(round(h * meta.scale_y))
    owner = cv2.resize(frame.owner, (nw, nh), interpolation=cv2.INTER_NEAREST)
    owner = cv2.copyMakeBorder(owner, meta.pad_y, ih - nh - meta.pad_y, meta.pad_x, iw - nw - meta.pad_x, cv2.BORDER_CONSTANT, value=-1)
    insts = frame.instances
    boxes = np.array([i.box for i in insts], np.float32).reshape(-1, 4) * np.float32(meta.scale_x)
    boxes += np.array([meta.pad_x, meta.pad_y] * 2, np.float32)
    masks = np.stack([cv2.resize((owner == i.id).astype(np.float32), (iw // 4, ih // 4), interpolation=cv2.INTER_AREA)
                      for i in insts]) if insts else np.zeros((0, ih // 4, iw // 4), np.float32)
    if flip:
        image = image[:, ::-1].copy()
        boxes = np.stack([iw - boxes[:, 2], boxes[:, 1], iw - boxes[:, 0], boxes[:, 3]], 1)
        masks = masks[:, :, ::-1].copy()
    return Sample(image, boxes, np.array([i.category for i in insts], np.int64), np.array([i.crowd for i in insts], bool), masks)


SCENES = ("drive", "crossings")  # the driving ``Scene`` (the default) or the static-camera ``CrossingScene``


def stream(seed: int, input_hw: tuple[int, int], clips_at_once: int = 6, clip_frames: int = 150, every: int = 3,
           frame_size: tuple[int, int] = (1280, 720), scene: str = "drive") -> Iterator[Sample]:
    """Endless training samples: every ``every``-th frame of clips seeded ``TRAIN_SEED_BASE +
    seed * 100_000 + k``, ``clips_at_once`` clips open at a time, frames drawn from a random one
    of them; half of the samples are mirrored. ``scene``: ``"drive"`` renders ``Scene`` clips,
    ``"crossings"`` ``CrossingScene`` clips scripted for ``clip_frames`` frames."""
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {SCENES}, not {scene!r}")
    rng = np.random.default_rng(seed)
    next_clip = TRAIN_SEED_BASE + seed * 100_000

    def clip():
        nonlocal next_clip
        next_clip += 1
        if scene == "crossings":
            from pipeline.demo.crossings import CrossingScene  # imports clip writing: only when asked for

            world = CrossingScene(next_clip - 1, *frame_size, frames=clip_frames)
        else:
            world = Scene(next_clip - 1, *frame_size)
        for k in range(clip_frames):
            if k % every == 0:
                yield world.render_next()
            else:
                world.skip()

    open_clips = [clip() for _ in range(clips_at_once)]
    while True:
        k = int(rng.integers(len(open_clips)))
        frame = next(open_clips[k], None)
        if frame is None:
            open_clips[k] = clip()
            continue
        yield sample(frame, input_hw, flip=bool(rng.random() < 0.5))
