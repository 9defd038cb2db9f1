"""Instance masks: from YOLO-style prototypes to frame pixels, and COCO RLE."""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as coco_mask


def masks_from_prototypes(
    coefficients: np.ndarray,
    prototypes: np.ndarray,
    boxes: np.ndarray,
    frame_hw: tuple[int, int],
    input_hw: tuple[int, int],
    scale: float,
    pad: tuple[float, float],
) -> np.ndarray:
    """Assemble instance masks in frame pixels.

    coefficients: (N, C) mask coefficients. prototypes: (C, Hp, Wp) for a network input of
    ``input_hw``. boxes: (N, 4) xyxy in frame pixels. The frame was fitted into the input as
    ``input = frame * scale + pad``. Returns (N, H, W) bool: the prototype mix
    ``coefficients @ prototypes`` sampled bilinearly at frame pixel centres, thresholded at
    sigmoid 0.5 (logit 0), and kept inside each box only. Only the box region of each mask is
    resampled, never the whole frame.
    """
    h, w = frame_hw
    n = len(coefficients)
    out = np.zeros((n, h, w), dtype=bool)
    if n == 0:
        return out
    c, hp, wp = prototypes.shape
    logits = (coefficients.astype(np.float32) @ prototypes.reshape(c, -1).astype(np.float32)).reshape(n, hp, wp)
    # frame pixel centre x -> prototype coordinate: ((x + 0.5) * scale + pad_x) * wp / in_w - 0.5
    sx, sy = scale * wp / input_hw[1], scale * hp / input_hw[0]
    bx = (0.5 * scale + pad[0]) * wp / input_hw[1] - 0.5
    by = (0.5 * scale + pad[1]) * hp / input_hw[0] - 0.5
    x1y1 = np.floor(boxes[:, :2]).astype(int).clip(0, [w, h])
    x2y2 = np.ceil(boxes[:, 2:]).astype(int).clip(0, [w, h])
    for i in range(n):
        (x1, y1), (x2, y2) = x1y1[i], x2y2[i]
        if x2 <= x1 or y2 <= y1:
            continue
        m = np.array([[sx, 0, sx * x1 + bx], [0, sy, sy * y1 + by]], dtype=np.float64)
        region = cv2.warpAffine(
            logits[i], m, (int(x2 - x1), int(y2 - y1)),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
        )
        out[i, y1:y2, x1:x2] = region > 0
    return out


def rle_encode(mask: np.ndarray) -> dict:
    """(H, W) bool -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (pycocotools)."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_decode(rle: dict) -> np.ndarray:
    """COCO RLE (compressed counts string) -> (H, W) bool."""
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)
