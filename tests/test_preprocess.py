import numpy as np
import pytest

from pipeline.preprocess import PAD_VALUE, letterbox, prepare, to_tensor


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
