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


def test_the_bundled_graph_is_the_one_write_graph_makes(tmp_path):
    import pytest

    pytest.importorskip("onnx")
    from pipeline.ops.nms import GRAPH, write_graph

    assert write_graph(tmp_path / "nms.onnx").read_bytes() == GRAPH.read_bytes()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), levels=st.integers(1, 3))
def test_equal_scores_keep_the_lower_index_first(seed, n, levels):
    """Quantised models give many equal scores: the kept set must not depend on how a sort breaks ties."""
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, n, size=60)
    scores = (rng.integers(0, levels, n) / levels).astype(np.float32)
    assert nms(boxes, scores, 0.3).tolist() == nms_reference(boxes, scores, 0.3)


def test_a_chain_of_suppressions_resolves_as_greedy_nms_does():
    """Box i overlaps box i+1 only: greedy keeps 0, 2, 4, ... (1 is dropped by 0, so 2 survives)."""
    n = 600  # longer than a block
    boxes = np.array([[i * 6.0, 0, i * 6.0 + 10, 10] for i in range(n)], np.float32)
    scores = np.linspace(1, 0.1, n).astype(np.float32)
    assert nms(boxes, scores, 0.2).tolist() == list(range(0, n, 2))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 700), k=st.integers(0, 50))
def test_max_det_keeps_the_first_of_the_full_result(seed, n, k):
    rng = np.random.default_rng(seed)
    boxes, scores = random_boxes(rng, n, size=400), rng.random(n).astype(np.float32)
    classes = rng.integers(0, 3, n)
    assert nms(boxes, scores, 0.5, max_det=k).tolist() == nms(boxes, scores, 0.5)[:k].tolist()
    assert batched_nms(boxes, scores, classes, 0.5, max_det=k).tolist() == batched_nms(boxes, scores, classes, 0.5)[:k].tolist()


def test_many_candidates_keep_what_torchvision_keeps():
    """30,000 low-overlap candidates (a low threshold on a large head), several classes."""
    import pytest

    torch = pytest.importorskip("torch")
    from torchvision.ops import batched_nms as batched_nms_tensor

    rng = np.random.default_rng(0)
    n = 30_000
    xy = rng.uniform(0, 1920, (n, 2))
    boxes = np.hstack([xy, xy + rng.uniform(4, 40, (n, 2))]).astype(np.float32)
    scores, classes = rng.random(n).astype(np.float32), rng.integers(0, 80, n)
    want = batched_nms_tensor(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.7).numpy()
    got = batched_nms(boxes, scores, classes, 0.7)
    assert len(want) > 20_000 and sorted(got.tolist()) == sorted(want.tolist())
    assert batched_nms(boxes, scores, classes, 0.7, max_det=300).tolist() == got[:300].tolist()
