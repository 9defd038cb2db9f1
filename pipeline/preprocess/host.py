"""Fit frames into the network input: letterbox, colour order, layout, scale (numpy + OpenCV).

Two ways of fitting, each matching the reference implementation of its family:

- ``letterbox`` (Ultralytics): keep the aspect ratio, centre, pad with grey 114, resize the
  uint8 image; ``rect``: the same, padded only up to a multiple of the stride.
- ``resize`` (Ultralytics' RT-DETR predictor, LetterBox ``scale_fill``): stretch the uint8
  image to the input size, no padding.
- ``torchvision`` (GeneralizedRCNNTransform): scale the [0, 1] float image so the short side
  reaches ``min_size`` without the long side passing ``max_size`` (or stretch to a fixed size
  for SSD), place it top-left and pad with the normalisation mean, which the engine maps to 0.
- ``shortside`` (torchvision's segmentation preset): the uint8 image resized (antialiased) so
  its short side is ``min_size``, then as ``torchvision``.
- ``centercrop`` (torchvision's classification preset): the same resize, then the centre cut out.
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


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.clip(1 - np.abs(x), 0, None)


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def _antialias_taps(n_in: int, n_out: int, cubic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights (n_out, taps) of an antialiased resize along one axis, as
    torch's and PIL's ``antialias=True``: the bilinear (triangle) or bicubic (a = -0.5) filter,
    stretched by the scale factor when shrinking."""
    scale = n_in / n_out
    half = 2.0 if cubic else 1.0  # the filter's half width
    support, inv = (half * scale, 1 / scale) if scale >= 1 else (half, 1.0)
    centre = (np.arange(n_out) + 0.5) * scale
    lo = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    hi = np.minimum((centre + support + 0.5).astype(np.int64), n_in)
    idx = lo[:, None] + np.arange(int((hi - lo).max()))[None]
    weight = (_cubic if cubic else _triangle)((idx - centre[:, None] + 0.5) * inv)
    weight[idx >= hi[:, None]] = 0
    weight /= weight.sum(1, keepdims=True)
    return np.minimum(idx, n_in - 1), weight.astype(np.float32)


def resize_antialiased(image: np.ndarray, size_hw: tuple[int, int], cubic: bool = False) -> np.ndarray:
    """HxWx3 uint8 -> (h, w, 3) uint8, as torchvision's ``resize(antialias=True)`` on a uint8
    tensor (its segmentation preset): within one grey level of it (measured: equal in all but
    about 5 in 100,000 values at 1080p). Separable, in float, rounded once: rows first
    (contiguous gathers; the column pass then runs on fewer rows), columns gathered by
    ``cv2.remap``. 1080p to 520x924: about 18 ms here (benchmarks/semantic_cost.py). cubic:
    bicubic instead of bilinear (some classifiers' presets)."""
    h, w = image.shape[:2]
    oh, ow = size_hw
    if oh != h:
        idx, weight = _antialias_taps(h, oh, cubic)
        x = np.zeros((oh, w, image.shape[2]), np.float32)
        for k in range(idx.shape[1]):
            x += image[idx[:, k]] * weight[:, k, None, None]
    else:
        x = image.astype(np.float32)
    if ow != w:
        idx, weight = _antialias_taps(w, ow, cubic)
        rows = np.repeat(np.arange(x.shape[0], dtype=np.float32)[:, None], ow, axis=1)
        acc = np.zeros((x.shape[0], ow, x.shape[2]), np.float32)
        for k in range(idx.shape[1]):
            cols = np.repeat(idx[None, :, k].astype(np.float32), x.shape[0], axis=0)
            acc += cv2.remap(x, cols, rows, cv2.INTER_NEAREST) * weight[None, :, k, None]
        x = acc
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def shortside_size(frame_hw: tuple[int, int], min_size: int, max_size: int) -> tuple[int, int]:
    """The (h, w) torchvision's ``resize(img, [min_size], max_size=max_size)`` gives (its
    segmentation preset): the short side ``min_size``, the long side ``int(min_size * long /
    short)``; over ``max_size``, the long side ``max_size`` and the short one in proportion."""
    h, w = frame_hw
    short, long = min(h, w), max(h, w)
    new_short, new_long = min_size, int(min_size * long / short)
    if new_long > max_size:  # (torchvision's presets have no bound; rtpipe's keeps a sliver from becoming huge)
        new_short, new_long = max(1, int(max_size * new_short / new_long)), max_size
    return (new_short, new_long) if h <= w else (new_long, new_short)


def fitted_size(frame_hw: tuple[int, int], fit: Fit) -> tuple[tuple[int, int], tuple[int, int]]:
    """(the resized frame's (h, w), the input's (h, w)) for the torchvision-style fits."""
    h, w = frame_hw
    ih, iw = fit.input_hw
    if fit.mode == "stretch":
        return (ih, iw), (ih, iw)
    size = shortside_size if fit.mode == "shortside" else torchvision_size
    nh, nw = size((h, w), fit.min_size, fit.max_size)
    if fit.stride:  # the input follows the frame, as in torchvision's own batch of one
        return (nh, nw), (-(-nh // fit.stride) * fit.stride, -(-nw // fit.stride) * fit.stride)
    if nh > ih or nw > iw:  # a frame of another aspect than the engine's: fit it inside
        r = min(ih / h, iw / w)
        nh, nw = min(math.floor(h * r), ih), min(math.floor(w * r), iw)
    return (nh, nw), (ih, iw)


def fit_torchvision(image: np.ndarray, fit: Fit) -> tuple[np.ndarray, FitTransform]:
    """HxWx3 uint8 BGR -> (3, H, W) float32 RGB in [0, 1] placed top-left (or stretched).

    Detection fits convert to float before resizing, as torchvision's detection transform
    resizes the float tensor (bilinear, half-pixel centres, no antialiasing, like
    ``F.interpolate(align_corners=False)``); "shortside" resizes the uint8 image with
    antialiasing, as its segmentation preset does (``resize_antialiased``).
    """
    h, w = image.shape[:2]
    (nh, nw), (ih, iw) = fitted_size((h, w), fit)
    if fit.mode == "shortside":
        small = image if (nh, nw) == (h, w) else resize_antialiased(image, (nh, nw))
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).astype(np.float32)
        rgb *= np.float32(1 / 255)
    else:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32)
        rgb *= np.float32(1 / 255)
        if (nh, nw) != (h, w):
            rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    out = np.empty((3, ih, iw), np.float32)
    out[:] = np.asarray(fit.pad_rgb, np.float32)[:, None, None]
    out[:, :nh, :nw] = rgb.transpose(2, 0, 1)
    return out, FitTransform(frame_hw=(h, w), input_hw=(ih, iw), scale_x=nw / w, scale_y=nh / h, pad_x=0, pad_y=0)


def centre_crop_box(size_hw: tuple[int, int], crop_hw: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of torchvision's ``center_crop`` (its rounding: Python's round of half the slack)."""
    return int(round((size_hw[0] - crop_hw[0]) / 2.0)), int(round((size_hw[1] - crop_hw[1]) / 2.0))


def fit_centercrop(image: np.ndarray, fit: Fit) -> tuple[np.ndarray, FitTransform]:
    """torchvision's classification preset: the uint8 frame resized (antialiased, ``fit.interp``)
    so its short side is ``fit.min_size``, the centre ``fit.input_hw`` cut out (zero-padded first
    where the resized frame is smaller, as ``center_crop`` does) -> (3, H, W) float32 RGB in [0, 1]."""
    h, w = image.shape[:2]
    ch, cw = fit.input_hw
    nh, nw = shortside_size((h, w), fit.min_size, fit.max_size)
    small = image if (nh, nw) == (h, w) else resize_antialiased(image, (nh, nw), fit.interp == "bicubic")
    if nh < ch or nw < cw:  # center_crop pads with zeros first
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        small = cv2.copyMakeBorder(small, ph // 2, (ph + 1) // 2, pw // 2, (pw + 1) // 2, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        offset = (-(ph // 2), -(pw // 2))
    else:
        offset = (0, 0)
    top, left = centre_crop_box(small.shape[:2], (ch, cw))
    crop = small[top : top + ch, left : left + cw]
    return to_tensor(crop), FitTransform(frame_hw=(h, w), input_hw=(ch, cw), scale_x=nw / w, scale_y=nh / h,
                                         pad_x=-(left + offset[1]), pad_y=-(top + offset[0]))


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
    if fit.mode == "centercrop":
        return fit_centercrop(image, fit)
    return fit_torchvision(image, fit)
