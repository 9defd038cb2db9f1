"""Instance masks: from YOLO-style prototypes to frame pixels, and COCO RLE."""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from pipeline.types import BoxMasks


def masks_from_prototypes(
    coefficients: np.ndarray,
    prototypes: np.ndarray,
    boxes: np.ndarray,
    frame_hw: tuple[int, int],
    input_hw: tuple[int, int],
    scale: float,
    pad: tuple[float, float],
) -> BoxMasks:
    """Assemble instance masks in frame pixels, one crop per box.

    coefficients: (N, C) mask coefficients. prototypes: (C, Hp, Wp) for a network input of
    ``input_hw``. boxes: (N, 4) xyxy in frame pixels. The frame was fitted into the input as
    ``input = frame * scale + pad``. Returns BoxMasks whose region i is box i widened to whole
    pixels: the prototype mix ``coefficients @ prototypes`` sampled bilinearly at those frame
    pixel centres, thresholded at sigmoid 0.5 (logit 0). Only box regions are resampled, never
    the whole frame.
    """
    h, w = frame_hw
    n = len(coefficients)
    if n == 0:
        return BoxMasks((), np.zeros((0, 4), np.int32), (h, w))
    c, hp, wp = prototypes.shape
    coefficients = coefficients.astype(np.float32, copy=False)
    prototypes = prototypes.astype(np.float32, copy=False)
    # frame pixel centre x -> prototype coordinate: ((x + 0.5) * scale + pad_x) * wp / in_w - 0.5
    sx, sy = scale * wp / input_hw[1], scale * hp / input_hw[0]
    bx = (0.5 * scale + pad[0]) * wp / input_hw[1] - 0.5
    by = (0.5 * scale + pad[1]) * hp / input_hw[0] - 0.5
    regions = np.concatenate([np.floor(boxes[:, :2]), np.ceil(boxes[:, 2:])], axis=1).astype(np.int32)
    regions = regions.clip(0, [w, h, w, h])
    regions[:, 2:] = np.maximum(regions[:, 2:], regions[:, :2])
    crops = []
    for i, (x1, y1, x2, y2) in enumerate(regions):
        if x2 <= x1 or y2 <= y1:
            crops.append(np.zeros((y2 - y1, x2 - x1), bool))
            continue
        # mix the prototypes only in the window the box samples (+1 cell for bilinear)
        ox, oy = sx * x1 + bx, sy * y1 + by
        wx1, wy1 = max(int(np.floor(ox)) - 1, 0), max(int(np.floor(oy)) - 1, 0)
        wx2 = min(int(np.ceil(sx * (x2 - 1) + bx)) + 2, wp)
        wy2 = min(int(np.ceil(sy * (y2 - 1) + by)) + 2, hp)
        window = prototypes[:, wy1:wy2, wx1:wx2]
        mix = (coefficients[i] @ window.reshape(c, -1)).reshape(wy2 - wy1, wx2 - wx1)
        m = np.array([[sx, 0, ox - wx1], [0, sy, oy - wy1]], dtype=np.float64)
        logit = cv2.warpAffine(
            mix, m, (int(x2 - x1), int(y2 - y1)),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
        )
        crops.append(logit > 0)
    return BoxMasks(tuple(crops), regions, (h, w))


def rle_encode(mask: np.ndarray) -> dict:
    """(H, W) bool -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (pycocotools)."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_encode_crop(crop: np.ndarray, x1: int, y1: int, frame_hw: tuple[int, int]) -> dict:
    """The COCO RLE of a full-frame mask that is ``crop`` at (x1, y1) and False elsewhere.

    Same result as ``rle_encode`` on the full-frame mask, at the cost of the crop only: the
    column-major run boundaries are found in the crop and shifted to frame positions;
    pycocotools compresses the counts.
    """
    h, w = int(frame_hw[0]), int(frame_hw[1])
    hb, wb = crop.shape
    padded = np.zeros((wb, hb + 2), np.int8)
    padded[:, 1:-1] = crop.T
    cols, rows = np.nonzero(np.diff(padded, axis=1))  # run starts and ends, column by column
    pos = (x1 + cols).astype(np.int64) * h + (y1 + rows)
    if hb == h and len(pos):  # a run reaching a column's bottom continues at the next column's top
        same = np.flatnonzero(pos[1:] == pos[:-1])
        pos = np.delete(pos, np.concatenate([same, same + 1]))
    counts = np.diff(np.concatenate([[0], pos, [h * w]]))
    if len(counts) > 1 and counts[-1] == 0:  # the mask ends on the frame's last pixel
        counts = counts[:-1]
    rle = coco_mask.frPyObjects({"counts": counts.tolist(), "size": [h, w]}, h, w)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def rle_decode(rle: dict) -> np.ndarray:
    """COCO RLE (compressed counts string) -> (H, W) bool."""
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)
