"""The device YOLO decoder gives the numpy decoder's detections and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.gpu.decode import YoloTensorDecoder, crops_to_host, mask_crops
from pipeline.models.settings import DecodeSettings
from pipeline.models.yolo import YoloDecoder
from pipeline.ops import masks_from_prototypes
from tests.gpu.conftest import DEVICES


def assert_same(got, want, mask_tolerance=0.01):
    """Same boxes (within 1e-3 px), scores, classes, order; masks differ in at most 1 % of a box's pixels."""
    assert len(got) == len(want)
    np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-3)
    np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-6)
    np.testing.assert_array_equal(got.class_id, want.class_id)
    assert (got.mask is None) == (want.mask is None)
    if want.mask is not None:
        np.testing.assert_array_equal(got.mask.regions, want.mask.regions)
        for a, b in zip(got.mask.crops, want.mask.crops):
            assert a.shape == b.shape and (a != b).sum() <= mask_tolerance * max(a.size, 1)


@pytest.mark.parametrize("device", DEVICES)
def test_demo_model_outputs_decode_the_same(demo_torch, demo_frames, device):
    tensors, metas = zip(*(demo_torch.preprocess(f) for f in demo_frames))
    outputs = demo_torch.infer(np.stack(tensors))
    want = demo_torch.decode(outputs, list(metas))
    d = demo_torch.decoder
    got = YoloTensorDecoder(d.nc, d.s)({k: torch.from_numpy(v).to(device) for k, v in outputs.items()}, list(metas))
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
    from pipeline.types import LetterboxMeta

    metas = [LetterboxMeta((480, 600), (256, 320), 0.5333333, 0.5333333, 0, 0), LetterboxMeta((256, 320), (256, 320), 1.0, 1.0, 0, 0)]
    want = YoloDecoder(nc, settings)(outputs, metas)
    got = YoloTensorDecoder(nc, settings)({k: torch.from_numpy(v) for k, v in outputs.items()}, metas)
    assert sum(len(w) for w in want) > 0
    for (g, _), w in zip(got, want):
        assert_same(g, w, mask_tolerance=0.02)


def test_mask_crops_sample_the_prototypes_like_the_numpy_path():
    rng = np.random.default_rng(5)
    coef = rng.normal(0, 1, (6, 32)).astype(np.float32)
    protos = rng.normal(0, 1, (32, 96, 160)).astype(np.float32)
    boxes = np.array([[0, 0, 1280, 720], [10.4, 20.6, 200.2, 300.9], [1270, 700, 1280, 720], [500, 300, 500, 340],
                      [-5, -5, 40, 30], [600.5, 100.5, 601.5, 101.5]], np.float32).clip(0, [1280, 720, 1280, 720])
    from pipeline.types import LetterboxMeta

    meta = LetterboxMeta((720, 1280), (384, 640), 0.5, 0.5, 0, 12)
    want = masks_from_prototypes(coef, protos, boxes, meta.frame_hw, meta.input_hw, (0.5, 0.5), (0, 12))
    crops, regions = mask_crops(torch.from_numpy(coef), torch.from_numpy(protos), boxes, meta)
    got = crops_to_host(crops, regions, meta.frame_hw)
    np.testing.assert_array_equal(got.regions, want.regions)
    for a, b in zip(got.crops, want.crops):
        assert a.shape == b.shape and (a != b).sum() <= 0.01 * max(a.size, 1)
