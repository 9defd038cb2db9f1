"""Fit frames into the network input on the device: the tensor twin of ``pipeline.preprocess.host``.

Same rules and rounding as the numpy path: the letterbox resizes the uint8 picture (bilinear,
half-pixel centres, rounded back to whole levels as OpenCV's uint8 resize does), pads with 114
and scales to [0, 1]; the torchvision fit resizes the [0, 1] float picture and pads with the
normalisation mean. Inputs are HxWx3 uint8 BGR tensors on any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.preprocess.host import PAD_VALUE, centre_crop_box, fitted_size, shortside_size
from pipeline.types import Fit, FitTransform


def _resize(chw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) float -> (3, h, w) bilinear, half-pixel centres, no antialiasing (cv2 INTER_LINEAR)."""
    if tuple(chw.shape[1:]) == tuple(size):
        return chw
    return F.interpolate(chw[None], size=size, mode="bilinear", align_corners=False, antialias=False)[0]


def letterbox(image: torch.Tensor, input_hw: tuple[int, int], pad_value: int = PAD_VALUE,
              stride: int | None = None) -> tuple[torch.Tensor, FitTransform]:
    """HxWx3 uint8 BGR -> (3, ih, iw) float32 RGB in [0, 1], letterboxed (with ``stride``: padded
    only to a multiple of it, the "rect" fit), and its meta.

    The same sizes and padding as ``pipeline.preprocess.host.letterbox`` (Ultralytics' rounding).
    """
    h, w = int(image.shape[0]), int(image.shape[1])
    ih, iw = input_hw
    r = min(ih / h, iw / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    if stride:
        ih, iw = nh + (ih - nh) % stride, nw + (iw - nw) % stride
    dw, dh = (iw - nw) / 2, (ih - nh) / 2
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    rgb = image.flip(-1).permute(2, 0, 1).float()
    resized = _resize(rgb, (nh, nw)).round_().clamp_(0, 255)
    out = torch.full((3, ih, iw), float(pad_value), dtype=torch.float32, device=image.device)
    out[:, top : top + nh, left : left + nw] = resized
    out.mul_(1 / 255)
    return out, FitTransform(frame_hw=(h, w), input_hw=(ih, iw), scale_x=r, scale_y=r, pad_x=left, pad_y=top)


def resize(image: torch.Tensor, input_hw: tuple[int, int]) -> tuple[torch.Tensor, FitTransform]:
    """HxWx3 uint8 BGR -> (3, ih, iw) float32 RGB in [0, 1], stretched, as ``pipeline.preprocess.host.resize``."""
    h, w = int(image.shape[0]), int(image.shape[1])
    ih, iw = input_hw
    rgb = image.flip(-1).permute(2, 0, 1).float()
    out = _resize(rgb, (ih, iw)).round_().clamp_(0, 255).mul_(1 / 255)
    return out.contiguous(), FitTransform(frame_hw=(h, w), input_hw=(ih, iw), scale_x=iw / w, scale_y=ih / h, pad_x=0, pad_y=0)


def fit_torchvision(image: torch.Tensor, fit: Fit) -> tuple[torch.Tensor, FitTransform]:
    """HxWx3 uint8 BGR -> (3, ih, iw) float32 RGB in [0, 1] placed top-left (or stretched), as
    ``pipeline.preprocess.host.fit_torchvision``."""
    h, w = int(image.shape[0]), int(image.shape[1])
    (nh, nw), (ih, iw) = fitted_size((h, w), fit)
    rgb = image.flip(-1).permute(2, 0, 1).float()
    if fit.mode == "shortside":  # the uint8 picture resized with antialiasing, rounded to whole levels, as the host twin
        aa = rgb if (nh, nw) == (h, w) else F.interpolate(rgb[None], size=(nh, nw), mode="bilinear", antialias=True)[0]
        resized = aa.round_().clamp_(0, 255).mul_(1 / 255)
    else:
        resized = _resize(rgb.mul_(1 / 255), (nh, nw))
    out = torch.empty((3, ih, iw), dtype=torch.float32, device=image.device)
    out[:] = torch.tensor(fit.pad_rgb, dtype=torch.float32, device=image.device)[:, None, None]
    out[:, :nh, :nw] = resized
    return out, FitTransform(frame_hw=(h, w), input_hw=(ih, iw), scale_x=nw / w, scale_y=nh / h, pad_x=0, pad_y=0)


def fit_centercrop(image: torch.Tensor, fit: Fit) -> tuple[torch.Tensor, FitTransform]:
    """HxWx3 uint8 BGR -> (3, ch, cw) float32 RGB in [0, 1]: the classification preset, as
    ``pipeline.preprocess.host.fit_centercrop`` (antialiased resize rounded to whole levels)."""
    h, w = int(image.shape[0]), int(image.shape[1])
    ch, cw = fit.input_hw
    nh, nw = shortside_size((h, w), fit.min_size, fit.max_size)
    rgb = image.flip(-1).permute(2, 0, 1).float()
    if (nh, nw) != (h, w):
        rgb = F.interpolate(rgb[None], size=(nh, nw), mode=fit.interp, antialias=True)[0].round_().clamp_(0, 255)
    ph, pw = max(ch - nh, 0), max(cw - nw, 0)
    if ph or pw:
        rgb = F.pad(rgb, (pw // 2, (pw + 1) // 2, ph // 2, (ph + 1) // 2))
    top, left = centre_crop_box(tuple(rgb.shape[1:]), (ch, cw))
    out = rgb[:, top : top + ch, left : left + cw].mul(1 / 255).contiguous()
    return out, FitTransform(frame_hw=(h, w), input_hw=(ch, cw), scale_x=nw / w, scale_y=nh / h,
                             pad_x=-(left - pw // 2), pad_y=-(top - ph // 2))


def prepare(image: torch.Tensor, fit: Fit) -> tuple[torch.Tensor, FitTransform]:
    """One frame on the device -> (3, H, W) float32 network input and its meta."""
    if fit.mode in ("letterbox", "rect"):
        return letterbox(image, fit.input_hw, stride=(fit.stride or 32) if fit.mode == "rect" else None)
    if fit.mode == "resize":
        return resize(image, fit.input_hw)
    if fit.mode == "centercrop":
        return fit_centercrop(image, fit)
    return fit_torchvision(image, fit)
