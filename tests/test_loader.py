"""Loading: load_model's arguments (backend, input size) and their errors; the backend picked for ``auto``."""

from __future__ import annotations

import pytest

from pipeline.loader import load_model, pick_backend
from pipeline.models import ModelError, Network
from pipeline.types import EngineMeta, Fit


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        ("nope.onnx", {}, "not found"),
        ("tiny-seg", {"backend": "tensorrt-x"}, "backend 'tensorrt-x' is not available"),
        ("tiny-seg", {"backend": "aoti"}, "the aoti backend needs a checkpoint or a .pt2 built by rtpipe build"),
        ("tiny-seg", {"imgsz": 640}, "fixed input of 320x320"),
    ],
)
def test_load_errors(spec, kwargs, message):
    with pytest.raises(ModelError, match=message):
        load_model(spec, **kwargs)


def test_torch_backend_needs_a_checkpoint():
    with pytest.raises(ModelError, match="the torch backend runs checkpoints"):
        load_model("tiny-seg", backend="torch")


@pytest.mark.parametrize("device, expected", [("cpu", "onnxruntime"), ("cuda", "torch")])
def test_auto_backend_for_checkpoints(device, expected):
    meta = EngineMeta("yolo", "detect", ("a",), Fit((64, 64)), ("output0",))
    checkpoint = Network(meta, "torchvision:x", module=object())
    assert pick_backend(checkpoint, device) == expected
    assert pick_backend(Network(meta, "x.onnx", onnx=b""), device) == "onnxruntime"
