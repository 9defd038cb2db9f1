"""Device mask blending gives the numpy blend's pixels; host and device outlines land on the box edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.ops.masks_device import DeviceMasks
from pipeline.overlay import device as gpu
from pipeline.overlay import host as cpu
from pipeline.types import BoxMasks, Detections
from tests.conftest import DEVICES


def random_dets(seed: int, hw=(240, 320), n=8) -> Detections:
    rng = np.random.default_rng(seed)
    h, w = hw
    crops, regions = [], []
    for _ in range(n):
        x1, y1 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x2, y2 = int(rng.integers(x1 + 1, w)), int(rng.integers(y1 + 1, h))
        regions.append((x1, y1, x2, y2))
        crops.append(rng.random((y2 - y1, x2 - x1)) < 0.6)
    conf = rng.random(n).astype(np.float32)
    conf[1] = conf[0]  # a tie: the lower index shows
    boxes = np.array(regions, np.float32)
    return Detections(boxes, conf, rng.integers(0, 10, n), BoxMasks(tuple(crops), np.array(regions), hw))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(5))
def test_blend_matches_the_numpy_blend(device, seed):
    dets = random_dets(seed)
    image = np.random.default_rng(seed + 100).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    want = image.copy()
    cpu.MaskAnnotator(0.45).annotate(want, dets)
    got = torch.from_numpy(image.copy()).to(device)
    masks = DeviceMasks([torch.from_numpy(c).to(device) for c in dets.mask.crops], dets.mask.regions)
    gpu.MaskAnnotator(0.45).annotate(got, dets, masks)
    assert np.abs(got.cpu().numpy().astype(int) - want.astype(int)).max() <= 1
    assert (got.cpu().numpy() != image).any()


@pytest.mark.parametrize("where", ["host", *DEVICES])
def test_boxes_are_drawn_on_the_box_edges_in_class_colours(where):
    """Host (OpenCV, anti-aliased: within 10 % of the colour) and device (exact) draw the same outlines."""
    dets = Detections(np.array([[20, 30, 120, 90], [200, 10, 319, 239]], np.float32), np.array([0.9, 0.8], np.float32), np.array([2, 5]))
    if where == "host":
        out, tolerance = np.zeros((240, 320, 3), np.uint8), 0.1
        cpu.BoxAnnotator().annotate(out, dets)
    else:
        image, tolerance = torch.zeros((240, 320, 3), dtype=torch.uint8, device=where), 0.0
        gpu.BoxAnnotator().annotate(image, dets)
        out = image.cpu().numpy()
    for (x1, y1, x2, y2), cid in zip(dets.xyxy.astype(int), dets.class_id):
        colour = np.array(cpu.class_colour(cid), int)
        mx, my = (x1 + x2) // 2, (y1 + y2) // 2
        for y, x in [(y1, mx), (y2, mx), (my, x1), (my, x2)]:  # x2, y2 inclusive, as cv2.rectangle
            assert (np.abs(out[y, x].astype(int) - colour) <= tolerance * colour).all(), (y, x)
        assert (out[(y1 + y2) // 2, (x1 + x2) // 2] == 0).all()  # inside untouched


def test_the_class_map_tint_is_the_hosts():
    """The device tint of a semantic class map gives the host's pixels (within a level of
    rounding), the background untouched; the legend is the host's."""
    from pipeline.overlay.device import ClassMapAnnotator as DeviceTint
    from pipeline.overlay.host import ClassMapAnnotator
    from pipeline.types import ClassMap

    rng = np.random.default_rng(5)
    scene = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    ids = rng.integers(0, 6, (360, 640)).astype(np.uint8)
    host = scene.copy()
    ClassMapAnnotator().annotate(host, Detections.empty(class_map=ClassMap(ids)))
    dev = torch.from_numpy(scene.copy())
    DeviceTint().annotate(dev, torch.from_numpy(ids))
    dev = dev.numpy()
    ClassMapAnnotator().legend(dev, ClassMap(ids))
    assert np.abs(dev.astype(int) - host.astype(int)).max() <= 1
    top = ids[:100]  # above the legend
    assert (dev[:100][top == 0] == scene[:100][top == 0]).all() and (dev[:100][top == 3] != scene[:100][top == 3]).any()
