"""Fit frames into the network input: letterbox, colour order, layout, scale (numpy + OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.types import LetterboxMeta

PAD_VALUE = 114


def letterbox(image: np.ndarray, input_hw: tuple[int, int], pad_value: int = PAD_VALUE) -> tuple[np.ndarray, LetterboxMeta]:
    """Resize keeping the aspect ratio and pad the rest, centred, to ``input_hw``.

    image: HxWx3 uint8. Returns (input_h, input_w, 3) uint8 and the meta that maps boxes back.
    Rounding follows Ultralytics' LetterBox (the unpadded size is rounded, the padding split
    with ``round(d -/+ 0.1)``) so the same frame gives the same tensor as its predictor.
    """
    h, w = image.shape[:2]
    ih, iw = input_hw
    r = min(ih / h, iw / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    dw, dh = (iw - nw) / 2, (ih - nh) / 2
    if (nw, nh) != (w, h):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    if top or bottom or left or right:
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    return image, LetterboxMeta(frame_hw=(h, w), input_hw=(ih, iw), scale=r, pad_x=left, pad_y=top)


def to_tensor(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 BGR -> 3xHxW float32 RGB in [0, 1], contiguous."""
    chw = image[:, :, ::-1].transpose(2, 0, 1)
    out = np.empty(chw.shape, dtype=np.float32)
    np.multiply(chw, np.float32(1 / 255), out=out)
    return out


def prepare(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, LetterboxMeta]:
    """One frame -> (3, H, W) float32 network input and its letterbox meta."""
    boxed, meta = letterbox(image, input_hw)
    return to_tensor(boxed), meta
