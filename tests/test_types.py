import numpy as np
import pytest

from pipeline.types import Detections, Frame, LetterboxMeta


@pytest.mark.parametrize(
    "xyxy, conf, cls, mask, error",
    [
        ([[0, 0, 1, 1]], [0.5], [1], None, None),
        (np.zeros((0, 4)), [], [], None, None),
        ([[0, 0, 1, 1]], [0.5, 0.4], [1], None, "disagree in length"),
        ([[0, 0, 1, 1]], [0.5], [1, 2], None, "disagree in length"),
        ([[2, 0, 1, 1]], [0.5], [1], None, "x1 <= x2"),
        ([[0, 3, 1, 1]], [0.5], [1], None, "x1 <= x2"),
        ([[0, 0, 1, 1]], [0.5], [1], np.zeros((1, 4, 4), bool), None),
        ([[0, 0, 1, 1]], [0.5], [1], np.zeros((2, 4, 4), bool), "mask must be"),
        ([[0, 0, 1, 1]], [0.5], [1], np.zeros((1, 4, 4), np.uint8), "mask must be"),
    ],
)
def test_detections_validation(xyxy, conf, cls, mask, error):
    if error:
        with pytest.raises(ValueError, match=error):
            Detections(xyxy, conf, cls, mask)
    else:
        d = Detections(xyxy, conf, cls, mask)
        assert d.xyxy.dtype == np.float32 and d.class_id.dtype == np.int32 and len(d) == len(conf)


def test_detections_indexing():
    d = Detections([[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]], [0.9, 0.5, 0.1], [0, 1, 2], np.zeros((3, 4, 4), bool))
    sub = d[d.confidence > 0.3]
    assert len(sub) == 2 and sub.class_id.tolist() == [0, 1] and sub.mask.shape == (2, 4, 4)
    assert d[np.array([2])].confidence.tolist() == pytest.approx([0.1])
    assert len(d[1]) == 1 and d[1].class_id.tolist() == [1]
    assert len(Detections.empty()) == 0 and Detections.empty((5, 6)).mask.shape == (0, 5, 6)


def test_frame_rejects_non_bgr_images():
    Frame(np.zeros((4, 4, 3), np.uint8), 0, 0.0, 0.0)
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8)):
        with pytest.raises(ValueError, match="HxWx3 uint8"):
            Frame(bad, 0, 0.0, 0.0)


def test_letterbox_meta_maps_back_and_clips():
    meta = LetterboxMeta(frame_hw=(100, 200), input_hw=(64, 64), scale=0.32, pad_x=0, pad_y=16)
    boxes = np.array([[0, 16, 64, 48], [-10, 0, 100, 70]], np.float32)
    out = meta.to_frame(boxes)
    assert out[0].tolist() == pytest.approx([0, 0, 200, 100])
    assert out[1].tolist() == pytest.approx([0, 0, 200, 100])  # clipped to the frame
