import numpy as np
import pytest

from pipeline.overlay.host import PALETTE, MaskAnnotator, class_colour, draw
from pipeline.types import Detections


def blend_reference(image, dets, alpha):
    """One detection at a time, lowest confidence first, whole-frame arrays."""
    out = image.astype(np.float32)
    label = np.full(image.shape[:2], -1)
    for i in np.argsort(dets.confidence, kind="stable"):
        label[dets.mask.dense(i)] = i
    for i in range(len(dets)):
        sel = label == i
        out[sel] = out[sel] * (1 - alpha) + np.array(class_colour(dets.class_id[i]), np.float32) * alpha
    return (out + 0.5).astype(np.uint8)


def sample():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    m = np.zeros((3, 60, 80), bool)
    m[0, 10:30, 10:40] = True
    m[1, 20:50, 30:70] = True   # overlaps the first
    m[2, 0:5, 0:5] = True
    xyxy = [[10, 10, 40, 30], [30, 20, 70, 50], [0, 0, 5, 5]]
    return img, Detections(xyxy, [0.5, 0.9, 0.3], [0, 1, 7], m)


def test_blend_matches_reference():
    img, d = sample()
    out = img.copy()
    MaskAnnotator(0.45).annotate(out, d)
    ref = blend_reference(img, d, 0.45)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    untouched = ~d.mask.dense().any(0)
    assert np.array_equal(out[untouched], img[untouched])


def test_draw_returns_a_new_image_and_marks_boxes():
    img, d = sample()
    before = img.copy()
    out = draw(img, d, ["a", "b"], hud={"fps": 29.97, "latency_ms": 12.0})
    assert np.array_equal(img, before) and out is not img
    assert not np.array_equal(out, img)
    empty = draw(img, Detections.empty(), [])
    assert np.array_equal(empty, img)


def test_hud_is_drawn_top_left_only_when_asked():
    img = np.zeros((120, 200, 3), np.uint8)
    plain = draw(img, Detections.empty(), [])
    hud = draw(img, Detections.empty(), [], hud={"fps": 30.0, "latency_ms": 45.0})
    changed = np.argwhere((hud != plain).any(2))
    assert len(changed) and changed[:, 0].max() < 40 and changed[:, 1].max() < 200
    assert not plain.any()


def test_class_colours_are_stable_and_distinct():
    assert class_colour(3) == class_colour(3) == class_colour(3 + len(PALETTE))
    assert len({class_colour(i) for i in range(20)}) == 20


def test_mask_size_mismatch_is_an_error():
    img, d = sample()
    with pytest.raises(ValueError, match="masks are"):
        MaskAnnotator().annotate(img[:30].copy(), d)


@pytest.mark.parametrize("seed", range(5))
def test_blend_matches_reference_on_random_overlaps(seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    n = 8
    dense = np.zeros((n, 50, 70), bool)
    for i in range(n):
        x1, y1 = rng.integers(0, 60), rng.integers(0, 40)
        dense[i, y1 : y1 + rng.integers(1, 20), x1 : x1 + rng.integers(1, 25)] = rng.random((1,)) > 0.1
        dense[i] &= rng.random((50, 70)) > 0.3
    d = Detections([[0, 0, 70, 50]] * n, rng.random(n), rng.integers(0, 5, n), dense)
    out = img.copy()
    MaskAnnotator(0.5).annotate(out, d)
    assert np.abs(out.astype(int) - blend_reference(img, d, 0.5).astype(int)).max() <= 1


def test_class_maps_are_tinted_with_a_legend_and_the_background_left_alone():
    from pipeline.overlay.host import ClassMapAnnotator
    from pipeline.types import ClassMap

    frame = np.full((120, 200, 3), 100, np.uint8)
    ids = np.zeros((120, 200), np.uint8)
    ids[:, 100:] = 3  # right half: class 3; the left half is background
    annot = ClassMapAnnotator(["bg", "a", "b", "road"], alpha=0.5)
    out = frame.copy()
    annot.annotate(out, Detections.empty(class_map=ClassMap(ids)))
    want = np.rint(100 * 0.5 + np.array(class_colour(3)) * 0.5)
    assert (out[:60, 150] == want).all()  # tinted half way to the class colour (above the legend)
    assert (out[:60, :100] == 100).all()  # background untouched
    legend = out[80:, :40]  # bottom-left: the swatch of class 3, and no entry for the background
    assert (legend == np.array(class_colour(3), np.uint8)).all(-1).any()
    with pytest.raises(ValueError, match="class map is"):
        annot.annotate(np.zeros((10, 10, 3), np.uint8), Detections.empty(class_map=ClassMap(ids)))


def test_classifier_labels_are_drawn():
    """A frame's top labels top-right; a crop classifier's label joins its box's label."""
    from pipeline.overlay.host import LabelAnnotator, TopLabelsAnnotator
    from pipeline.types import Labels

    frame = np.full((200, 400, 3), 100, np.uint8)
    out = frame.copy()
    TopLabelsAnnotator().annotate(out, Detections.empty(labels=Labels([3, 1], [0.7, 0.2], ("a", "b", "c", "d"))))
    changed = np.argwhere((out != frame).any(-1))
    assert len(changed) and changed[:, 1].min() > 200 and changed[:, 0].max() < 100  # top-right only
    dets = Detections(np.array([[50, 100, 150, 180]], np.float32), [0.9], [0])
    plain, with_crop = frame.copy(), frame.copy()
    LabelAnnotator(["car"]).annotate(plain, dets)
    dets.crop_labels = Labels([2], [0.8], ("red", "green", "blue"))
    LabelAnnotator(["car"]).annotate(with_crop, dets)
    wider = lambda img: np.argwhere((img != frame).any(-1))[:, 1].max()  # noqa: E731
    assert wider(with_crop) > wider(plain) + 20  # "car 0.90 | blue 0.80" is longer than "car 0.90"


def test_a_known_speed_joins_its_box_label():
    """"#3 car 0.90 42 km/h" once the track has a speed; nothing added while it has none (NaN)."""
    from pipeline.overlay.host import LabelAnnotator

    frame = np.full((200, 400, 3), 100, np.uint8)
    drawn = {}
    for name, speed in (("none", None), ("nan", [np.nan]), ("known", [42.0])):
        out = frame.copy()
        LabelAnnotator(["car"]).annotate(out, Detections(np.array([[50, 100, 150, 180]], np.float32), [0.9], [0], tracker_id=[3],
                                                         speed_kmh=speed))
        drawn[name] = out
    wider = lambda img: np.argwhere((img != frame).any(-1))[:, 1].max()  # noqa: E731
    assert (drawn["nan"] == drawn["none"]).all() and wider(drawn["known"]) > wider(drawn["none"]) + 20
