"""The device letterbox and torchvision fit give the numpy path's tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.preprocess import device as gpu
from pipeline.preprocess import host as cpu
from pipeline.types import Fit
from tests.conftest import DEVICES


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("frame_hw, input_hw", [((720, 1280), (384, 640)), ((480, 640), (640, 640)), ((1080, 1920), (640, 640)),
                                                ((300, 500), (320, 320)), ((640, 640), (640, 640)), ((97, 211), (256, 320))])
def test_letterbox_matches_the_numpy_path(device, frame_hw, input_hw):
    rng = np.random.default_rng(sum(frame_hw))
    image = rng.integers(0, 256, (*frame_hw, 3), dtype=np.uint8)
    image[: frame_hw[0] // 2] = 40  # flat regions and edges, not only noise
    want, want_meta = cpu.prepare(image, Fit(input_hw))
    got, meta = gpu.prepare(torch.from_numpy(image).to(device), Fit(input_hw))
    assert meta == want_meta
    assert got.shape == want.shape and got.dtype == torch.float32 and got.device.type == device
    diff = np.abs(got.cpu().numpy() - want)
    assert diff.max() <= 1 / 255 + 1e-6  # OpenCV's fixed-point uint8 resize may round the other way
    assert (diff > 1e-6).mean() < 0.1  # and mostly the same value
    pad = got.cpu().numpy()[:, : meta.pad_y] if meta.pad_y else got.cpu().numpy()[:, :, : int(meta.pad_x)]
    if pad.size:
        assert np.allclose(pad, 114 / 255)


@pytest.mark.parametrize("mode, frame_hw", [("torchvision", (720, 1280)), ("torchvision", (500, 375)), ("stretch", (720, 1280)),
                                           ("resize", (720, 1280)), ("resize", (300, 200))])
def test_other_fits_match_the_numpy_path(mode, frame_hw):
    fit = Fit((800, 1333) if mode == "torchvision" else (320, 320), mode, 800, 1333, (0.485, 0.456, 0.406))
    image = np.random.default_rng(1).integers(0, 256, (*frame_hw, 3), dtype=np.uint8)
    want, want_meta = cpu.prepare(image, fit)
    got, meta = gpu.prepare(torch.from_numpy(image), fit)
    assert meta == want_meta
    # resize rounds the uint8 picture as OpenCV does, maybe the other way: one grey level
    assert np.abs(got.numpy() - want).max() < (1 / 255 + 1e-6 if mode == "resize" else 1e-4)


@pytest.mark.parametrize("stride, frame_hw", [(1, (720, 1280)), (1, (640, 360)), (1, (90, 160)), (0, (480, 640)), (0, (1280, 720))])
def test_the_shortside_fit_matches_the_numpy_path(stride, frame_hw):
    """Semantic models' fit (antialiased uint8 resize of the short side): per frame (stride 1) or
    into a fixed input (stride 0), within one grey level of the host's."""
    fit = Fit((160, 285), "shortside", 160, 640, (0.485, 0.456, 0.406), stride)
    image = np.random.default_rng(2).integers(0, 256, (*frame_hw, 3), dtype=np.uint8)
    want, want_meta = cpu.prepare(image, fit)
    got, meta = gpu.prepare(torch.from_numpy(image), fit)
    assert meta == want_meta and got.shape == want.shape
    diff = np.abs(got.numpy() - want)
    assert diff.max() <= 1 / 255 + 1e-6 and (diff > 1e-6).mean() < 0.01
