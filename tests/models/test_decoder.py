"""Decoders: the shared settings, and every family's decoder saying whether it decodes on the device (``on_device()``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pipeline.models import torchvision as tvf
from pipeline.models import yolo
from pipeline.models.decoder import DecodeSettings
from pipeline.types import EngineMeta, Fit, FitTransform


def test_decode_settings_defaults():
    s = DecodeSettings()
    assert (s.conf, s.iou, s.max_det) == (0.25, 0.45, 300)
    assert s.classes is None and s.agnostic is False and s.nms is False


def yolo_meta(layout: str | None, task: str = "detect") -> EngineMeta:
    outputs = ("output0", "output1") if task == "segment" else ("output0",)
    return EngineMeta("yolo", task, ("a", "b"), Fit((64, 64)), outputs, layout=layout)


@pytest.mark.parametrize("layout", [None, "dense"])
def test_dense_yolo_outputs_decode_on_the_device_too(layout):
    torch = pytest.importorskip("torch")
    settings = DecodeSettings(conf=0.5)
    dec = yolo.decoder(yolo_meta(layout), settings)
    assert isinstance(dec, yolo.DenseDecoder)
    device = dec.on_device()
    assert device is not None and callable(device)
    # one candidate above conf: the device decoder finds it, as the host decoder does
    out0 = np.zeros((1, 6, 3), np.float32)
    out0[0, :4, 1] = [32, 32, 10, 20]
    out0[0, 5, 1] = 0.9
    transform = FitTransform((64, 64), (64, 64), 1.0, 1.0, 0.0, 0.0)
    (host,) = dec({"output0": out0}, [transform])
    ((dets, masks),) = device({"output0": torch.from_numpy(out0)}, [transform])
    assert masks is None and len(dets) == len(host) == 1
    assert dets.class_id.tolist() == host.class_id.tolist() == [1]
    np.testing.assert_allclose(dets.xyxy, host.xyxy, atol=1e-4)
    np.testing.assert_allclose(host.xyxy, [[27, 22, 37, 42]], atol=1e-4)


@pytest.mark.parametrize("layout, task", [("end2end", "detect"), ("end2end", "segment"), ("rtdetr", "detect"), ("rtdetr-topk", "detect")])
def test_nms_free_yolo_outputs_decode_on_the_host(layout, task):
    dec = yolo.decoder(yolo_meta(layout, task), DecodeSettings())
    assert isinstance(dec, yolo.NmsFreeDecoder) and dec.layout == layout
    assert dec.on_device() is None


def test_torchvision_outputs_decode_on_the_host():
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from pipeline.models import resolve

    rcnn = EngineMeta("torchvision", "detect", ("a",), Fit((64, 64), "torchvision", 64, 64), ("boxes", "scores", "labels"), kind="rcnn")
    assert isinstance(tvf.decoder(rcnn, DecodeSettings()), tvf.TwoStageDecoder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        ssd = resolve("torchvision:ssdlite320_mobilenet_v3_large").meta
    assert isinstance(tvf.decoder(ssd, DecodeSettings()), tvf.OneStageDecoder)
    for meta in (rcnn, ssd):
        assert tvf.decoder(meta, DecodeSettings()).on_device() is None
