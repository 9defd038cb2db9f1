"""Anchors against torchvision's own generators."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402

from pipeline.ops import default_boxes, grid_anchors  # noqa: E402


@pytest.mark.parametrize("image_hw, grids", [((256, 448), [(32, 56), (16, 28), (8, 14)]), ((300, 300), [(38, 38), (19, 19), (10, 10)])])
def test_grid_anchors_match_anchor_generator(image_hw, grids):
    sizes = ((32, 40, 50), (64, 80, 101), (128, 161, 203))
    ratios = ((0.5, 1.0, 2.0),) * 3
    gen = AnchorGenerator(sizes, ratios)
    feats = [torch.zeros(1, 1, *g) for g in grids]
    want = gen(ImageList(torch.zeros(1, 3, *image_hw), [image_hw]), feats)[0].numpy()
    got = np.concatenate([
        grid_anchors(g, (image_hw[0] // g[0], image_hw[1] // g[1]), gen.generate_anchors(s, r).numpy())
        for g, s, r in zip(grids, sizes, ratios)
    ])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("steps", [None, [8, 16, 32]])
def test_default_boxes_match_default_box_generator(steps):
    image_hw, grids = (300, 320), [(38, 40), (19, 20), (10, 10)]
    gen = DefaultBoxGenerator([[2], [2, 3], [2]], steps=steps)
    feats = [torch.zeros(1, 1, *g) for g in grids]
    want = gen(ImageList(torch.zeros(1, 3, *image_hw), [image_hw]), feats)[0].numpy()
    got = np.concatenate([
        default_boxes(g, (image_hw[1] / s, image_hw[0] / s) if steps else (g[1], g[0]), p.clamp(0, 1).numpy(), image_hw)
        for g, s, p in zip(grids, steps or [None] * 3, gen._wh_pairs)
    ])
    np.testing.assert_allclose(got, want, atol=1e-4)
