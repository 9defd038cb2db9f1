"""Frames for the builder: rendered sample inputs for the self-check, calibration frames for INT8."""

from __future__ import annotations

import numpy as np

from pipeline.preprocess.host import prepare
from pipeline.types import EngineMeta


def sample_inputs(meta: EngineMeta, n: int, seed: int = 0) -> np.ndarray:
    """(n, 3, H, W) float32: ``n`` rendered road scenes, fitted as the engine expects."""
    from pipeline.sources import SyntheticScene

    fit = meta.fit
    h, w = fit.input_hw
    scenes = [SyntheticScene(int(w * 1.5), int(h * 1.5), seed * 100 + i) for i in range(n)]
    return np.stack([prepare(s.render(7 * i), fit)[0] for i, s in enumerate(scenes)])


def split(frames: list) -> tuple[list, list]:
    """Calibration frames -> (used to calibrate, held back for the accuracy check): every fourth is held back."""
    return [f for i, f in enumerate(frames) if i % 4 != 3], frames[3::4]


def calibration_frames(path: str, count: int) -> list[np.ndarray]:
    """Up to ``count`` BGR frames from a folder of images or a video, spread over the whole source."""
    from pipeline.build.options import BuildError
    from pipeline.sources import SourceError, open_source

    try:
        source = open_source(path)
    except SourceError as exc:
        raise BuildError(f"--calib {path}: {exc}") from exc
    if source.live:
        raise BuildError(f"--calib {path}: a live source cannot be calibrated on; give a folder of images or a video file")
    step = max(1, (source.total or count) // count)
    frames = []
    for f in source.frames():
        if f.index % step == 0:
            frames.append(f.image)
            if len(frames) == count:
                break
    if len(frames) < 8:
        raise BuildError(f"--calib {path}: found {len(frames)} frames, need at least 8 (calibration + held-back check frames)")
    return frames
