import numpy as np
import pytest

from pipeline.types import BoxMasks, Detections, FitTransform, Frame


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
        ([[0, 0, 1, 1]], [0.5], [1], np.zeros((2, 4, 4), bool), "2 masks for 1 boxes"),
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
    assert len(sub) == 2 and sub.class_id.tolist() == [0, 1] and sub.mask.dense().shape == (2, 4, 4)
    assert d[np.array([2])].confidence.tolist() == pytest.approx([0.1])
    assert len(d[1]) == 1 and d[1].class_id.tolist() == [1]
    assert len(Detections.empty()) == 0 and Detections.empty((5, 6)).mask.dense().shape == (0, 5, 6)


def test_box_masks_round_trip_and_validation():
    dense = np.zeros((3, 6, 8), bool)
    dense[0, 1:3, 2:5] = True
    dense[1, 5, 7] = True
    bm = BoxMasks.from_dense(dense)
    assert bm.regions.tolist() == [[2, 1, 5, 3], [7, 5, 8, 6], [0, 0, 0, 0]]
    np.testing.assert_array_equal(bm.dense(), dense)
    np.testing.assert_array_equal(bm[np.array([False, True, False])].dense(), dense[1:2])
    assert bm.area().tolist() == [6, 1, 0]
    with pytest.raises(ValueError, match="outside"):
        BoxMasks((np.ones((2, 2), bool),), [[7, 5, 9, 7]], (6, 8))
    with pytest.raises(ValueError, match="does not fit"):
        BoxMasks((np.ones((3, 2), bool),), [[0, 0, 2, 2]], (6, 8))


def test_frame_rejects_non_bgr_images():
    Frame(np.zeros((4, 4, 3), np.uint8), 0, 0.0, 0.0)
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8)):
        with pytest.raises(ValueError, match="HxWx3 uint8"):
            Frame(bad, 0, 0.0, 0.0)


def test_fit_transform_maps_back_and_clips():
    meta = FitTransform(frame_hw=(100, 200), input_hw=(64, 64), scale_x=0.32, scale_y=0.32, pad_x=0, pad_y=16)
    boxes = np.array([[0, 16, 64, 48], [-10, 0, 100, 70]], np.float32)
    out = meta.to_frame(boxes)
    assert out[0].tolist() == pytest.approx([0, 0, 200, 100])
    assert out[1].tolist() == pytest.approx([0, 0, 200, 100])  # clipped to the frame


def test_scale_boxes_inverts_the_fit_and_clips():
    boxes = np.array([[10, 20, 110, 60], [-5, -5, 500, 500]], np.float32)
    out = FitTransform((200, 300), (100, 100), 0.5, 0.25, 10, 20).to_frame(boxes)
    np.testing.assert_allclose(out[0], [0, 0, 200, 160])
    np.testing.assert_allclose(out[1], [0, 0, 300, 200])  # clipped to the frame
    assert out.dtype == np.float32




def test_speeds_are_validated_and_selected_with_their_detections():
    d = Detections([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]], [0.9, 0.8, 0.7], [0, 1, 2], tracker_id=[1, -1, 2],
                   speed_kmh=[10.0, np.nan, 30.0])
    assert d.speed_kmh.dtype == np.float32
    assert d[[2, 0]].speed_kmh.tolist() == [30.0, 10.0] and np.isnan(d[1].speed_kmh[0])
    assert Detections(d.xyxy, d.confidence, d.class_id).speed_kmh is None
    with pytest.raises(ValueError, match="holds 2 speeds for 3 boxes"):
        Detections(d.xyxy, d.confidence, d.class_id, speed_kmh=[1.0, 2.0])
    with pytest.raises(ValueError, match=">= 0 and finite"):
        Detections(d.xyxy, d.confidence, d.class_id, speed_kmh=[1.0, -2.0, 3.0])
