"""Masks from prototypes on the device match the host's (``pipeline.ops.masks``)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.ops import masks_from_prototypes
from pipeline.ops.masks_device import crops_to_host, mask_crops
from pipeline.types import FitTransform


def test_mask_crops_sample_the_prototypes_like_the_numpy_path():
    rng = np.random.default_rng(5)
    coef = rng.normal(0, 1, (6, 32)).astype(np.float32)
    protos = rng.normal(0, 1, (32, 96, 160)).astype(np.float32)
    boxes = np.array([[0, 0, 1280, 720], [10.4, 20.6, 200.2, 300.9], [1270, 700, 1280, 720], [500, 300, 500, 340],
                      [-5, -5, 40, 30], [600.5, 100.5, 601.5, 101.5]], np.float32).clip(0, [1280, 720, 1280, 720])
    meta = FitTransform((720, 1280), (384, 640), 0.5, 0.5, 0, 12)
    want = masks_from_prototypes(coef, protos, boxes, meta.frame_hw, meta.input_hw, (0.5, 0.5), (0, 12))
    crops, regions = mask_crops(torch.from_numpy(coef), torch.from_numpy(protos), boxes, meta)
    got = crops_to_host(crops, regions, meta.frame_hw)
    np.testing.assert_array_equal(got.regions, want.regions)
    for a, b in zip(got.crops, want.crops):
        assert a.shape == b.shape and (a != b).sum() <= 0.01 * max(a.size, 1)
