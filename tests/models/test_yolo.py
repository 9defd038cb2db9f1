import numpy as np
import pytest

from pipeline.models.yolo import DecodeSettings, YoloDecoder, parse_names
from pipeline.types import LetterboxMeta

META = LetterboxMeta(frame_hw=(64, 128), input_hw=(64, 64), scale_x=0.5, scale_y=0.5, pad_x=0, pad_y=16)


def raw(cands, nc=3, nm=0):
    """cands: list of (cx, cy, w, h, class, score[, coef...]) -> output0 (1, 4+nc+nm, N)."""
    out = np.zeros((1, 4 + nc + nm, len(cands)), np.float32)
    for j, c in enumerate(cands):
        out[0, :4, j] = c[:4]
        out[0, 4 + c[4], j] = c[5]
        out[0, 4 + nc :, j] = c[6:] if nm else []
    return out


def test_decode_threshold_nms_and_scaling():
    cands = [
        (32, 32, 20, 20, 0, 0.9),
        (33, 32, 20, 20, 0, 0.8),  # same object, same class: suppressed
        (33, 32, 20, 20, 1, 0.7),  # same place, other class: kept
        (10, 20, 4, 4, 2, 0.2),    # under conf
    ]
    d = YoloDecoder(3, DecodeSettings(conf=0.25, iou=0.5))({"output0": raw(cands)}, [META])[0]
    assert d.class_id.tolist() == [0, 1]
    assert d.confidence.tolist() == pytest.approx([0.9, 0.7])
    # input (22, 22, 42, 42) -> frame ((22-0)/0.5, (22-16)/0.5, ...) = (44, 12, 84, 52)
    assert d.xyxy[0].tolist() == pytest.approx([44, 12, 84, 52])
    assert d.mask is None


@pytest.mark.parametrize(
    "settings, expected",
    [
        (DecodeSettings(conf=0.25, iou=0.5, agnostic=True), [0]),
        (DecodeSettings(conf=0.25, iou=0.5, classes=(1,)), [1]),
        (DecodeSettings(conf=0.25, iou=0.5, max_det=1), [0]),
        (DecodeSettings(conf=0.95, iou=0.5), []),
    ],
)
def test_decode_options(settings, expected):
    cands = [(32, 32, 20, 20, 0, 0.9), (33, 32, 20, 20, 1, 0.7)]
    d = YoloDecoder(3, settings)({"output0": raw(cands)}, [META])[0]
    assert d.class_id.tolist() == expected


def test_decode_masks_follow_coefficients():
    cands = [(32, 32, 20, 20, 0, 0.9, 1.0, 0.0), (16, 40, 10, 10, 1, 0.8, -1.0, 0.0)]
    protos = np.ones((1, 2, 16, 16), np.float32)
    d = YoloDecoder(3, DecodeSettings())({"output0": raw(cands, nm=2), "output1": protos}, [META])[0]
    dense = d.mask.dense()
    assert dense.shape == (2, 64, 128)
    x1, y1, x2, y2 = d.xyxy[0].astype(int)
    assert dense[0, y1:y2, x1:x2].all() and dense[0].sum() == (x2 - x1) * (y2 - y1)
    assert not dense[1].any()  # negative coefficient: sigmoid < 0.5 everywhere


def test_decode_rejects_too_few_channels():
    with pytest.raises(ValueError, match="fewer than 4 \\+ 80"):
        YoloDecoder(80, DecodeSettings())({"output0": np.zeros((1, 10, 5), np.float32)}, [META])


@pytest.mark.parametrize(
    "value, expected",
    [("{0: 'person', 1: 'car'}", ["person", "car"]), ("{1: 'b', 0: 'a'}", ["a", "b"]), ("['x', 'y']", ["x", "y"])],
)
def test_parse_names(value, expected):
    assert parse_names(value) == expected


@pytest.mark.parametrize("value", ["__import__('os').system('echo hi')", "42", "{0: 'a'"])
def test_parse_names_never_evaluates(value):
    with pytest.raises(ValueError, match="names"):
        parse_names(value)
