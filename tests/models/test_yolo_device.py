"""The device YOLO decoder gives the numpy decoder's detections and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models.decoder import DecodeSettings
from pipeline.models.yolo import DenseDecoder
from pipeline.models.yolo_device import DenseDeviceDecoder
from tests.conftest import DEVICES, assert_same


@pytest.mark.parametrize("device", DEVICES)
def test_demo_model_outputs_decode_the_same(demo_torch, demo_frames, device):
    tensors, metas = zip(*(demo_torch.preprocess(f) for f in demo_frames))
    outputs = demo_torch.infer(np.stack(tensors))
    want = demo_torch.postprocess(outputs, list(metas))
    d = demo_torch.decoder
    got = DenseDeviceDecoder(d.nc, d.s)({k: torch.from_numpy(v).to(device) for k, v in outputs.items()}, list(metas))
    assert sum(len(w) for w in want) >= 10  # real detections with masks, not an empty comparison
    for (g, device_masks), w in zip(got, want):
        assert_same(g, w)
        assert len(device_masks.crops) == len(g) and all(c.device.type == device for c in device_masks.crops)


@pytest.mark.parametrize("settings", [DecodeSettings(conf=0.3), DecodeSettings(conf=0.2, classes=(1, 3)),
                                      DecodeSettings(conf=0.1, agnostic=True), DecodeSettings(conf=0.1, max_det=5),
                                      DecodeSettings(conf=0.1, iou=0.3)])
@pytest.mark.parametrize("seg", [False, True])
def test_random_dense_outputs_decode_the_same(settings, seg):
    """Dense random candidates (many overlapping boxes, every class) through thresholds, filters and NMS."""
    rng = np.random.default_rng(3)
    nc, n, b = 5, 600, 2
    pred = np.zeros((b, 4 + nc + (32 if seg else 0), n), np.float32)
    pred[:, 0] = rng.uniform(0, 320, (b, n))
    pred[:, 1] = rng.uniform(0, 256, (b, n))
    pred[:, 2:4] = rng.uniform(4, 80, (b, 2, n))
    pred[:, 4 : 4 + nc] = rng.uniform(0, 0.6, (b, nc, n))
    if seg:
        pred[:, 4 + nc :] = rng.normal(0, 1, (b, 32, n))
    outputs = {"output0": pred}
    if seg:
        outputs["output1"] = rng.normal(0, 1, (b, 32, 64, 80)).astype(np.float32)
    from pipeline.types import FitTransform

    metas = [FitTransform((480, 600), (256, 320), 0.5333333, 0.5333333, 0, 0), FitTransform((256, 320), (256, 320), 1.0, 1.0, 0, 0)]
    want = DenseDecoder(nc, settings)(outputs, metas)
    got = DenseDeviceDecoder(nc, settings)({k: torch.from_numpy(v) for k, v in outputs.items()}, metas)
    assert sum(len(w) for w in want) > 0
    for (g, _), w in zip(got, want):
        assert_same(g, w, mask_tolerance=0.02)
