import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ops import masks_from_prototypes, rle_encode, rle_encode_crop
from pipeline.ops.masks import rle_decode
from pipeline.preprocess.host import letterbox

pytestmark = pytest.mark.parity  # pins a reference's output: also run on the newest allowed dependencies (.ci/run)


def masks_reference(coef, protos, boxes, frame_hw, input_hw, meta):
    """Whole-frame route: upsample the mixed logits to the input, undo the letterbox, crop."""
    h, w = frame_hw
    logits = np.einsum("nc,chw->nhw", coef, protos)
    out = np.zeros((len(coef), h, w), bool)
    # sample the prototype grid at every frame pixel centre
    xs = ((np.arange(w) + 0.5) * meta.scale_x + meta.pad_x) * protos.shape[2] / input_hw[1] - 0.5
    ys = ((np.arange(h) + 0.5) * meta.scale_y + meta.pad_y) * protos.shape[1] / input_hw[0] - 0.5
    mx, my = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    for i in range(len(coef)):
        full = cv2.remap(logits[i].astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        x1, y1, x2, y2 = np.ceil(boxes[i]).astype(int)  # pixel indices x1 <= x < x2
        out[i, y1:y2, x1:x2] = full[y1:y2, x1:x2] > 0
    return out


def test_masks_match_whole_frame_reference():
    rng = np.random.default_rng(1)
    frame_hw, input_hw = (90, 160), (64, 64)
    _, meta = letterbox(np.zeros((*frame_hw, 3), np.uint8), input_hw)
    coef = rng.normal(size=(5, 8)).astype(np.float32)
    protos = rng.normal(size=(8, 16, 16)).astype(np.float32)
    boxes = np.array([[0, 0, 160, 90], [10.5, 5.2, 60.7, 40.1], [100, 50, 159.5, 89.5], [20, 20, 21, 21], [30, 30, 30, 30]], np.float32)
    got = masks_from_prototypes(coef, protos, boxes, frame_hw, input_hw, (meta.scale_x, meta.scale_y), (meta.pad_x, meta.pad_y)).dense()
    ref = masks_reference(coef, protos, boxes, frame_hw, input_hw, meta)
    assert got.shape == (5, 90, 160)
    disagree = (got != ref).mean()
    assert disagree < 0.002  # bilinear sampling of the same points; only rounding at sign changes
    assert not got[4].any()  # zero-area box: empty mask


def test_masks_stay_inside_boxes():
    coef, protos = np.ones((1, 2), np.float32), np.ones((2, 8, 8), np.float32)
    got = masks_from_prototypes(coef, protos, np.array([[4, 6, 10, 9.5]], np.float32), (20, 20), (32, 32), (1.6, 1.6), (0, 0))
    assert got.regions.tolist() == [[4, 6, 10, 10]] and got.crops[0].shape == (4, 6) and got.crops[0].all()
    assert got.dense().sum() == 6 * 4


@settings(max_examples=50, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 1000))
def test_rle_roundtrip(h, w, seed):
    m = np.random.default_rng(seed).random((h, w)) > 0.5
    rle = rle_encode(m)
    assert rle["size"] == [h, w] and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(rle_decode(rle), m)


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), seed=st.integers(0, 10_000), full_height=st.booleans())
def test_rle_from_crop_equals_rle_of_full_mask(h, w, seed, full_height):
    rng = np.random.default_rng(seed)
    x1, y1 = rng.integers(0, w), rng.integers(0, h)
    x2, y2 = rng.integers(x1, w + 1), rng.integers(y1, h + 1)
    if full_height:  # runs may cross column boundaries
        y1, y2 = 0, h
    crop = rng.random((y2 - y1, x2 - x1)) > rng.random()
    full = np.zeros((h, w), bool)
    full[y1:y2, x1:x2] = crop
    assert rle_encode_crop(crop, x1, y1, (h, w)) == rle_encode(full)


def test_rle_is_coco_column_major():
    m = np.zeros((3, 4), bool)
    m[0, 1] = True  # one pixel; column-major position 3
    from pycocotools import mask as cm

    assert cm.area({"size": [3, 4], "counts": rle_encode(m)["counts"].encode()}) == 1
    assert cm.toBbox({"size": [3, 4], "counts": rle_encode(m)["counts"].encode()}).tolist() == pytest.approx([1, 0, 1, 1])


def test_paste_masks_matches_torchvision():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from pipeline.ops import paste_masks

    rng = np.random.default_rng(0)
    h, w, n = 120, 200, 12
    masks = cv2.GaussianBlur(rng.random((n, 28, 28)).astype(np.float32).transpose(1, 2, 0), (0, 0), 2).transpose(2, 0, 1)
    masks = np.ascontiguousarray(masks)
    centre, half = rng.uniform(0, [w, h], (n, 2)), rng.uniform(1, 45, (n, 2))
    boxes = np.hstack([centre - half, centre + half]).astype(np.float32)  # centres inside, some edges outside
    want = paste_masks_in_image(torch.from_numpy(masks)[:, None], torch.from_numpy(boxes), (h, w))[:, 0].numpy() > 0.5
    got = paste_masks(masks, boxes, (h, w))
    assert got.frame_hw == (h, w) and len(got) == n
    np.testing.assert_array_equal(got.dense(), want)


def test_paste_masks_outside_the_frame_is_empty():
    from pipeline.ops import paste_masks

    got = paste_masks(np.ones((1, 28, 28), np.float32), np.array([[300, 300, 320, 330]], np.float32), (100, 100))
    assert not got.dense().any() and got.crops[0].size == 0


@pytest.mark.parametrize("h, w", [(360, 640), (480, 640), (640, 360)])  # 16:9, 4:3, portrait
def test_paste_masks_matches_torchvision_at_every_aspect_and_box_size(h, w):
    """Boxes from a pixel to most of the frame (the 30x30 padded mask shrunk and grown 20x),
    inside and across the frame's edges: rtpipe's paste is torchvision's, pixel for pixel, except
    where torchvision's own probability is within 1e-5 of the threshold (float rounding)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from pipeline.ops import paste_masks

    rng = np.random.default_rng(h + w)
    n = 60
    masks = torch.nn.functional.avg_pool2d(torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(w)), 5, 1, 2)[:, 0].numpy()
    size = np.exp(rng.uniform(np.log(0.8), np.log(0.9 * min(h, w)), (n, 2)))
    centre = rng.uniform(0, [w, h], (n, 2))
    boxes = np.hstack([centre - size / 2, centre + size / 2]).clip(0, [w, h, w, h]).astype(np.float32)
    prob = paste_masks_in_image(torch.from_numpy(masks)[:, None], torch.from_numpy(boxes), (h, w))[:, 0].numpy()
    got = paste_masks(masks, boxes, (h, w)).dense()
    differ = got != (prob > 0.5)
    assert not (differ & (np.abs(prob - 0.5) > 1e-5)).any(), f"{int(differ.sum())} pixels differ"
