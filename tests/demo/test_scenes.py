"""The scene generator: deterministic, exact visible masks, every class, motion and occlusion."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.demo.scenes import CLASSES, MIN_AREA, MIN_VISIBLE, Scene


@pytest.fixture(scope="module")
def frames():
    return list(Scene(21, 640, 360).frames(90))


def test_same_seed_same_clip_other_seed_other_clip():
    a, b, c = (list(Scene(seed, 320, 180).frames(5)) for seed in (4, 4, 5))
    for fa, fb in zip(a, b):
        assert np.array_equal(fa.image, fb.image) and np.array_equal(fa.owner, fb.owner)
        assert [(i.box, i.area, i.crowd) for i in fa.instances] == [(i.box, i.area, i.crowd) for i in fb.instances]
    assert not np.array_equal(a[0].image, c[0].image)


def test_boxes_are_tight_around_the_visible_masks_and_masks_never_overlap(frames):
    for f in frames[::10]:
        seen = np.zeros(f.owner.shape, bool)
        for inst in f.instances:
            x1, y1, x2, y2 = inst.box
            full = f.owner == inst.id
            assert full.sum() == inst.area == inst.crop.sum()
            assert np.array_equal(full[y1:y2, x1:x2], inst.crop) and full.sum() == full[y1:y2, x1:x2].sum()
            assert inst.crop[0].any() and inst.crop[-1].any() and inst.crop[:, 0].any() and inst.crop[:, -1].any()
            assert not (seen & full).any()
            seen |= full


def test_semantic_labels_follow_the_picture(frames):
    """Objects are "other"; sky above the horizon, road, sidewalk and lane marks below it, each
    with the picture's own look (sky bright, road and marks apart)."""
    from pipeline.demo.scenes import MARK, OTHER, ROAD, SEMANTIC, SIDEWALK, SKY

    for f in frames[::15]:
        assert f.labels.shape == f.owner.shape and f.labels.dtype == np.uint8 and f.labels.max() < len(SEMANTIC)
        assert (f.labels[f.owner >= 0] == OTHER).all()
        present = set(np.unique(f.labels).tolist())
        assert {SKY, ROAD, SIDEWALK, MARK} <= present
        grey = f.image.mean(-1)
        assert grey[f.labels == MARK].mean() > grey[f.labels == ROAD].mean() + 40  # marks are painted white on asphalt
        rows = np.flatnonzero((f.labels == SKY).any(1))
        assert rows.max() < np.flatnonzero((f.labels == ROAD).any(1)).min()  # the sky is above the road


def test_all_classes_appear_move_enter_and_leave(frames):
    classes = {i.category for f in frames for i in f.instances}
    assert classes == set(range(len(CLASSES)))
    ids = [{i.id for i in f.instances} for f in frames]
    assert ids[-1] - ids[0] and ids[0] - ids[-1]  # some objects came, some went
    first = {i.id: i.box for i in frames[0].instances}
    later = {i.id: i.box for i in frames[5].instances}
    assert any(first[k] != later[k] for k in first.keys() & later.keys())


def test_occluded_instances_lose_pixels_and_the_mostly_hidden_are_crowd(frames):
    insts = [i for f in frames for i in f.instances]
    assert all(0 < i.area <= i.drawn for i in insts)
    assert sum(i.area < i.drawn for i in insts) >= 10  # partly hidden behind nearer objects
    h, w = frames[0].owner.shape
    for i in insts:
        assert i.crowd == (i.area < MIN_AREA * w * h or i.area < MIN_VISIBLE * i.drawn)
    assert any(i.crowd for i in insts) and any(not i.crowd for i in insts)


def test_frames_differ_in_lighting_noise_and_size():
    small, big = next(Scene(2, 320, 180).frames(1)), next(Scene(2, 1280, 720).frames(1))
    assert small.image.shape == (180, 320, 3) and big.image.shape == (720, 1280, 3)
    means = [next(Scene(s, 160, 90).frames(1)).image.mean() for s in range(6)]
    assert np.ptp(means) > 10  # per-clip lighting
