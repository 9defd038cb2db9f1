import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.preprocess.host import (
    PAD_VALUE,
    fit_torchvision,
    letterbox,
    prepare,
    resize_antialiased,
    shortside_size,
    to_tensor,
    torchvision_size,
)
from pipeline.types import Fit

pytestmark = pytest.mark.parity  # fits pinned to Ultralytics' and torchvision's own


@pytest.mark.parametrize(
    "frame_hw, input_hw, resized_hw, pad_xy",
    [
        ((720, 1280), (640, 640), (360, 640), (0, 140)),
        ((1080, 1920), (320, 320), (180, 320), (0, 70)),
        ((480, 640), (640, 640), (480, 640), (0, 80)),
        ((640, 480), (640, 640), (640, 480), (80, 0)),
        ((640, 640), (640, 640), (640, 640), (0, 0)),
        ((101, 203), (64, 64), (32, 64), (0, 16)),  # odd padding split as Ultralytics does
        ((100, 100), (64, 96), (64, 64), (16, 0)),
    ],
)
def test_letterbox_geometry(frame_hw, input_hw, resized_hw, pad_xy):
    img = np.full((*frame_hw, 3), 7, np.uint8)
    out, meta = letterbox(img, input_hw)
    assert out.shape == (*input_hw, 3)
    assert (meta.pad_x, meta.pad_y) == pad_xy
    rh, rw = resized_hw
    px, py = pad_xy
    assert (out[py : py + rh, px : px + rw] == 7).all()
    assert (out == PAD_VALUE).sum() == out.size - rh * rw * 3
    # a box spanning the whole frame maps back to the whole frame
    back = meta.to_frame(np.array([[px, py, px + rw, py + rh]], np.float32))
    assert back[0].tolist() == pytest.approx([0, 0, frame_hw[1], frame_hw[0]], abs=1.5 / meta.scale_x)


def test_to_tensor_layout_and_scale():
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = 255  # blue in BGR
    t = to_tensor(img)
    assert t.shape == (3, 2, 3) and t.dtype == np.float32 and t.flags.c_contiguous
    assert t[2].max() == 1.0 and t[0].max() == 0.0  # RGB order: blue is channel 2


def test_prepare_combines_both():
    t, meta = prepare(np.zeros((90, 160, 3), np.uint8), (64, 64))
    assert t.shape == (3, 64, 64) and meta.frame_hw == (90, 160) and meta.input_hw == (64, 64)
    assert t[:, 0, 0] == pytest.approx([PAD_VALUE / 255] * 3)


def _transform(min_size, max_size, fixed=None):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    return torch, GeneralizedRCNNTransform(min_size, max_size, [0.0] * 3, [1.0] * 3, size_divisible=1, fixed_size=fixed)


@settings(max_examples=80, deadline=None)
@given(h=st.integers(16, 2000), w=st.integers(16, 2000), min_size=st.sampled_from([256, 320, 384, 800]),
       max_size=st.sampled_from([320, 427, 640, 1333]))
def test_torchvision_size_matches_generalized_rcnn_transform(h, w, min_size, max_size):
    torch, t = _transform(min_size, max_size)
    images, _ = t([torch.zeros(3, h, w)])
    assert torchvision_size((h, w), min_size, max_size) == tuple(images.image_sizes[0])


@pytest.mark.parametrize("mode, frame_hw", [("torchvision", (480, 840)), ("stretch", (240, 400))])
def test_fit_torchvision_gives_the_transform_input(mode, frame_hw):
    """Same pixels as torchvision's resize (float, bilinear), top-left, padded with the mean."""
    mean = (0.485, 0.456, 0.406)
    fit = Fit((256, 448), mode, 256, 427, mean) if mode == "torchvision" else Fit((320, 320), "stretch", pad_rgb=mean)
    torch, t = _transform(256, 427) if mode == "torchvision" else _transform(320, 320, (320, 320))
    img = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (*frame_hw, 3), dtype=np.uint8), (0, 0), 2)
    x, meta = fit_torchvision(img, fit)
    rgb = torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255
    images, _ = t([rgb])
    rh, rw = images.image_sizes[0]
    np.testing.assert_allclose(x[:, :rh, :rw], images.tensors[0, :, :rh, :rw].numpy(), atol=1e-5)  # float rounding only
    assert (x[:, rh:, :] == np.float32(mean)[:, None, None]).all() and (x[:, :, rw:] == np.float32(mean)[:, None, None]).all()
    assert (meta.scale_x, meta.scale_y) == (rw / frame_hw[1], rh / frame_hw[0]) and (meta.pad_x, meta.pad_y) == (0, 0)


def test_fit_torchvision_fits_frames_of_another_aspect_inside():
    x, meta = fit_torchvision(np.zeros((1000, 300, 3), np.uint8), Fit((256, 448), "torchvision", 256, 427))
    assert x.shape == (3, 256, 448) and round(1000 * meta.scale_y) <= 256


@settings(max_examples=60, deadline=None)
@given(h=st.integers(8, 1200), w=st.integers(8, 1200), size=st.sampled_from([64, 160, 520]))
def test_shortside_size_matches_torchvisions_resize(h, w, size):
    """The segmentation preset's output size: torchvision's ``resize(img, [size])``."""
    import torch
    from torchvision.transforms import functional as TF

    want = tuple(TF.resize(torch.zeros(1, h, w), [size], antialias=False).shape[1:])
    assert shortside_size((h, w), size, 100_000) == want


@pytest.mark.parametrize("frame_hw, out_hw", [((1080, 1920), (520, 924)), ((360, 640), (160, 284)), ((480, 640), (160, 213)),
                                              ((640, 360), (284, 160)), ((80, 100), (160, 200)), ((97, 211), (60, 130))])
def test_antialiased_resize_matches_torchvision(frame_hw, out_hw):
    """Within one grey level of torchvision's uint8 ``resize(antialias=True)``, equal almost everywhere
    (shrinking, enlarging, odd sizes); plain bilinear (OpenCV) is far from it when shrinking."""
    import torch
    from torchvision.transforms import functional as TF

    rng = np.random.default_rng(sum(frame_hw))
    img = rng.integers(0, 256, (*frame_hw, 3), dtype=np.uint8)
    img[: frame_hw[0] // 3] = 200  # flat areas and sharp edges, not only noise
    want = TF.resize(torch.from_numpy(img).permute(2, 0, 1), list(out_hw), antialias=True).permute(1, 2, 0).numpy()
    diff = np.abs(resize_antialiased(img, out_hw).astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3
    if frame_hw[0] > 2 * out_hw[0]:
        plain = cv2.resize(img, out_hw[::-1], interpolation=cv2.INTER_LINEAR)
        assert np.abs(plain.astype(int) - want.astype(int)).max() > 20
