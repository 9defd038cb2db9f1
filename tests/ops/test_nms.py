import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ops import batched_nms, box_iou, nms
from tests.conftest import random_boxes


def nms_reference(boxes, scores, thr):
    """Plain greedy NMS, one box at a time."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep, removed = [], set()
    for i in order:
        if i in removed:
            continue
        keep.append(i)
        for j in order:
            if j not in removed and j != i and j not in keep:
                if box_iou(boxes[i : i + 1], boxes[j : j + 1])[0, 0] > thr:
                    removed.add(j)
    return keep


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 60), thr=st.floats(0.1, 0.9))
def test_nms_matches_reference(seed, n, thr):
    rng = np.random.default_rng(seed)
    boxes, scores = random_boxes(rng, n), rng.random(n).astype(np.float32)
    assert nms(boxes, scores, thr).tolist() == nms_reference(boxes, scores, thr)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 60))
def test_batched_nms_equals_per_class_nms(seed, n):
    rng = np.random.default_rng(seed)
    boxes, scores = random_boxes(rng, n), rng.random(n).astype(np.float32)
    classes = rng.integers(0, 3, n)
    expected = []
    for c in range(3):
        idx = np.flatnonzero(classes == c)
        expected += idx[nms(boxes[idx], scores[idx], 0.5)].tolist()
    got = batched_nms(boxes, scores, classes, 0.5)
    assert sorted(got.tolist()) == sorted(expected)
    assert np.all(np.diff(scores[got]) <= 0)  # highest score first


def test_nms_keeps_overlapping_boxes_of_other_classes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert batched_nms(boxes, scores, np.array([0, 1]), 0.5).tolist() == [0, 1]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 80))
def test_torchvision_batched_nms_agrees_with_numpy(seed, n):
    """The device decoder's NMS (torchvision's) keeps what the host decoder's does."""
    import pytest

    torch = pytest.importorskip("torch")
    from torchvision.ops import batched_nms as batched_nms_tensor

    rng = np.random.default_rng(seed)
    boxes, scores = random_boxes(rng, n), rng.random(n).astype(np.float32)
    classes = rng.integers(0, 4, n)
    got = batched_nms_tensor(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.5)
    assert got.tolist() == batched_nms(boxes, scores, classes, 0.5).tolist()
