"""Anchor boxes for one-stage detectors, in network-input pixels, float32, xyxy.

Both generators produce anchors position-major (row by row over the feature grid), with the
anchors of one position consecutive, level after level: the order of the heads' outputs.
"""

from __future__ import annotations

import numpy as np


def grid_anchors(grid_hw: tuple[int, int], stride_hw: tuple[int, int], cell_anchors: np.ndarray) -> np.ndarray:
    """RetinaNet/FCOS/RPN anchors of one level (torchvision ``AnchorGenerator``).

    cell_anchors: (A, 4) xyxy around the origin. Returns (gh * gw * A, 4): each cell anchor
    shifted to (x * stride_w, y * stride_h) for every grid position.
    """
    gh, gw = grid_hw
    sh, sw = stride_hw
    ys, xs = np.meshgrid(np.arange(gh, dtype=np.float32) * sh, np.arange(gw, dtype=np.float32) * sw, indexing="ij")
    shifts = np.stack([xs.ravel(), ys.ravel(), xs.ravel(), ys.ravel()], axis=1)
    cells = np.asarray(cell_anchors, np.float32)
    return (shifts[:, None, :] + cells[None, :, :]).reshape(-1, 4)


def default_boxes(grid_hw: tuple[int, int], steps_xy: tuple[float, float], wh: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """SSD default boxes of one level (torchvision ``DefaultBoxGenerator``).

    wh: (A, 2) box sizes relative to the image (already clipped to [0, 1] when the model clips).
    Centres sit at ((x + 0.5) / steps_x, (y + 0.5) / steps_y) in relative units. Returns
    (gh * gw * A, 4) xyxy in pixels of an image of ``image_hw``.
    """
    gh, gw = grid_hw
    cx = ((np.arange(gw, dtype=np.float32) + np.float32(0.5)) / np.float32(steps_xy[0])).astype(np.float32)
    cy = ((np.arange(gh, dtype=np.float32) + np.float32(0.5)) / np.float32(steps_xy[1])).astype(np.float32)
    yy, xx = np.meshgrid(cy, cx, indexing="ij")
    wh = np.asarray(wh, np.float32)
    a = len(wh)
    centres = np.repeat(np.stack([xx.ravel(), yy.ravel()], axis=1), a, axis=0)
    sizes = np.tile(wh, (gh * gw, 1))
    size_xy = np.array([image_hw[1], image_hw[0]], np.float32)
    return np.concatenate([(centres - np.float32(0.5) * sizes) * size_xy, (centres + np.float32(0.5) * sizes) * size_xy], axis=1)
