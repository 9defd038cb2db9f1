import numpy as np
import pytest

from pipeline.ops import box_iou, cxcywh_to_xyxy
from tests.conftest import random_boxes


def iou_reference(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def test_box_iou_matches_reference():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 30), random_boxes(rng, 20)
    np.testing.assert_allclose(box_iou(a, b), iou_reference(a, b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([0, 0, 2, 2], [0, 0, 2, 2], 1.0),
        ([0, 0, 2, 2], [1, 0, 3, 2], 1 / 3),
        ([0, 0, 1, 1], [2, 2, 3, 3], 0.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # empty boxes: 0, not NaN
    ],
)
def test_box_iou_cases(a, b, expected):
    assert box_iou(np.array([a], float), np.array([b], float))[0, 0] == pytest.approx(expected)


def test_cxcywh_to_xyxy():
    out = cxcywh_to_xyxy(np.array([[10, 20, 4, 6]], np.float32))
    assert out.tolist() == [[8, 17, 12, 23]]


def _torchvision_coders():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import BoxCoder, BoxLinearCoder

    return torch, BoxCoder, BoxLinearCoder


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_decode_deltas_matches_torchvision_box_coder(weights):
    from pipeline.ops import decode_deltas

    torch, BoxCoder, _ = _torchvision_coders()
    rng = np.random.default_rng(0)
    anchors = np.sort(rng.uniform(0, 300, (200, 4)).astype(np.float32).reshape(200, 2, 2), axis=1).transpose(0, 2, 1).reshape(200, 4)
    deltas = rng.normal(0, 2, (200, 4)).astype(np.float32)
    deltas[0, 2:] = 50  # exp overflow guard: clamped
    coder = BoxCoder(weights)
    want = coder.decode_single(torch.from_numpy(deltas), torch.from_numpy(anchors)).numpy()
    np.testing.assert_allclose(decode_deltas(deltas, anchors, weights, coder.bbox_xform_clip), want, rtol=1e-6, atol=1e-3)


def test_decode_ltrb_matches_torchvision_linear_coder():
    from pipeline.ops import decode_ltrb

    torch, _, BoxLinearCoder = _torchvision_coders()
    rng = np.random.default_rng(1)
    anchors = np.concatenate([rng.uniform(0, 200, (50, 2)), rng.uniform(200, 400, (50, 2))], axis=1).astype(np.float32)
    dist = rng.uniform(0, 3, (50, 4)).astype(np.float32)
    want = BoxLinearCoder(normalize_by_size=True).decode(torch.from_numpy(dist), torch.from_numpy(anchors)).numpy()
    np.testing.assert_allclose(decode_ltrb(dist, anchors), want, rtol=1e-6, atol=1e-4)
