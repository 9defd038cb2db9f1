"""Fit frames into the network input: letterbox, colour order, layout, scale (numpy + OpenCV).

Two ways of fitting, each matching the reference implementation of its family:

- ``letterbox`` (Ultralytics): keep the aspect ratio, centre, pad with grey 114, resize the
  uint8 image; ``rect``: the same, padded only up to a multiple of the stride.
- ``resize`` (Ultralytics' RT-DETR predictor, LetterBox ``scale_fill``): stretch the uint8
  image to the input size, no padding.
- ``torchvision`` (GeneralizedRCNNTransform): scale the [0, 1] float image so the short side
  reaches ``min_size`` without the long side passing ``max_size`` (or stretch to a fixed size
  for SSD), place it top-left and pad with the normalisation mean, which the engine maps to 0.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.types import Fit, FitTransform

PAD_VALUE = 114


def letterbox(image: np.ndarray, input_hw: tuple[int, int], pad_value: int = PAD_VALUE,
              stride: int | None = None) -> tuple[np.ndarray, FitTransform]:
    """Resize keeping the aspect ratio and pad the rest, centred, to ``input_hw`` (with
    ``stride``: only up to the next multiple of it, so the input is as small as the frame's
    shape allows: the ``rect`` fit).

    image: HxWx3 uint8. Returns (input_h, input_w, 3) uint8 and the meta that maps boxes back.
    Rounding follows Ultralytics' LetterBox (the unpadded size is rounded, the padding split
    with ``round(d -/+ 0.1)``) so the same frame gives the same tensor as its predictor.
    """
    h, w = image.shape[:2]
    ih, iw = input_hw
    r = min(ih / h, iw / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    if stride:
        ih, iw = nh + (ih - nh) % stride, nw + (iw - nw) % stride
    dw, dh = (iw - nw) / 2, (ih - nh) / 2
    if (nw, nh) != (w, h):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    if top or bottom or left or right:
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    return image, FitTransform(frame_hw=(h, w), input_hw=(ih, iw), scale_x=r, scale_y=r, pad_x=left, pad_y=top)


def resize(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, FitTransform]:
    """Stretch the uint8 image to ``input_hw`` (bilinear), as Ultralytics' RT-DETR predictor does."""
    h, w = image.shape[:2]
    ih, iw = input_hw
    if (h, w) != (ih, iw):
        image = cv2.resize(image, (iw, ih), interpolation=cv2.INTER_LINEAR)
    return image, FitTransform(frame_hw=(h, w), input_hw=(ih, iw), scale_x=iw / w, scale_y=ih / h, pad_x=0, pad_y=0)


def to_tensor(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 BGR -> 3xHxW float32 RGB in [0, 1], contiguous."""
    chw = image[:, :, ::-1].transpose(2, 0, 1)
    out = np.empty(chw.shape, dtype=np.float32)
    np.multiply(chw, np.float32(1 / 255), out=out)
    return out


def torchvision_size(frame_hw: tuple[int, int], min_size: int, max_size: int) -> tuple[int, int]:
    """The (h, w) torchvision's GeneralizedRCNNTransform resizes a frame to.

    Same arithmetic as torchvision in eager mode: a double-precision scale and
    ``floor(side * scale)``, as ``interpolate(scale_factor=s, recompute_scale_factor=True)`` does.
    """
    h, w = frame_hw
    scale = min(min_size / min(h, w), max_size / max(h, w))
    return math.floor(float(h) * scale), math.floor(float(w) * scale)


def fit_torchvision(image: np.ndarray, fit: Fit) -> tuple[np.ndarray, FitTransform]:
    """HxWx3 uint8 BGR -> (3, H, W) float32 RGB in [0, 1] placed top-left (or stretched).

    The image is converted to float before resizing, as torchvision resizes the float tensor;
    bilinear, half-pixel centres, no antialiasing, like ``F.interpolate(align_corners=False)``.
    """
    h, w = image.shape[:2]
    ih, iw = fit.input_hw
    if fit.mode == "stretch":
        nh, nw = ih, iw
    elif fit.stride:  # the input follows the frame, as in torchvision's own batch of one
        nh, nw = torchvision_size((h, w), fit.min_size, fit.max_size)
        ih, iw = -(-nh // fit.stride) * fit.stride, -(-nw // fit.stride) * fit.stride
    else:
        nh, nw = torchvision_size((h, w), fit.min_size, fit.max_size)
        if nh > ih or nw > iw:  # a frame of another aspect than the engine's: fit it inside
            r = min(ih / h, iw / w)
            nh, nw = min(math.floor(h * r), ih), min(math.floor(w * r), iw)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32)
    rgb *= np.float32(1 / 255)
    if (nh, nw) != (h, w):
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    out = np.empty((3, ih, iw), np.float32)
    out[:] = np.asarray(fit.pad_rgb, np.float32)[:, None, None]
    out[:, :nh, :nw] = rgb.transpose(2, 0, 1)
    return out, FitTransform(frame_hw=(h, w), input_hw=(ih, iw), scale_x=nw / w, scale_y=nh / h, pad_x=0, pad_y=0)


def prepare(image: np.ndarray, fit: Fit | tuple[int, int]) -> tuple[np.ndarray, FitTransform]:
    """One frame -> (3, H, W) float32 network input and its meta. A bare (h, w) means letterbox."""
    if not isinstance(fit, Fit):
        fit = Fit(tuple(fit))
    if fit.mode in ("letterbox", "rect"):
        boxed, meta = letterbox(image, fit.input_hw, stride=(fit.stride or 32) if fit.mode == "rect" else None)
        return to_tensor(boxed), meta
    if fit.mode == "resize":
        boxed, meta = resize(image, fit.input_hw)
        return to_tensor(boxed), meta
    return fit_torchvision(image, fit)
