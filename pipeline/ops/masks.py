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
    scale: tuple[float, float],
    pad: tuple[float, float],
) -> BoxMasks:
    """Assemble instance masks in frame pixels, one crop per box.

    coefficients: (N, C) mask coefficients. prototypes: (C, Hp, Wp) for a network input of
    ``input_hw``. boxes: (N, 4) xyxy in frame pixels. The frame was fitted into the input as
    ``input = frame * scale + pad`` (per axis, x then y). Returns BoxMasks whose region i holds
    the frame pixels whose index lies in box i (x1 <= x < x2, y1 <= y < y2: the pixels
    Ultralytics' crop_mask keeps): the prototype mix ``coefficients @ prototypes`` sampled
    bilinearly at those pixel centres, thresholded at sigmoid 0.5 (logit 0). Only box regions are
    resampled, never the whole frame.
    """
    h, w = frame_hw
    n = len(coefficients)
    if n == 0:
        return BoxMasks((), np.zeros((0, 4), np.int32), (h, w))
    c, hp, wp = prototypes.shape
    coefficients = coefficients.astype(np.float32, copy=False)
    prototypes = prototypes.astype(np.float32, copy=False)
    # frame pixel centre x -> prototype coordinate: ((x + 0.5) * scale_x + pad_x) * wp / in_w - 0.5
    sx, sy = scale[0] * wp / input_hw[1], scale[1] * hp / input_hw[0]
    bx = (0.5 * scale[0] + pad[0]) * wp / input_hw[1] - 0.5
    by = (0.5 * scale[1] + pad[1]) * hp / input_hw[0] - 0.5
    regions = np.ceil(boxes).astype(np.int32)  # pixels x with x1 <= x < x2 (Ultralytics' crop_mask rule)
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


def class_rles(ids: np.ndarray) -> dict[int, tuple[int, dict]]:
    """(H, W) uint8 class map -> {class id: (pixel count, COCO RLE of its pixels)} for every class
    present, from one pass over the map: the column-major runs of equal ids, each class's runs
    and the gaps between them are its RLE counts (pycocotools compresses them)."""
    h, w = ids.shape
    flat = np.ascontiguousarray(ids.T).ravel()  # COCO RLE runs down the columns
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    ends = np.concatenate([starts[1:], [flat.size]])
    values = flat[starts]
    out = {}
    for cid in np.unique(values):
        s, e = starts[values == cid], ends[values == cid]
        counts = np.empty(2 * len(s) + 1, np.int64)
        counts[0::2] = np.concatenate([s[:1], s[1:] - e[:-1], [flat.size - e[-1]]])  # gaps (the first may be 0)
        counts[1::2] = e - s
        if counts[-1] == 0:
            counts = counts[:-1]
        rle = coco_mask.frPyObjects({"counts": counts.tolist(), "size": [h, w]}, h, w)
        out[int(cid)] = (int((e - s).sum()), {"size": [h, w], "counts": rle["counts"].decode("ascii")})
    return out


def rle_decode(rle: dict) -> np.ndarray:
    """COCO RLE (compressed counts string) -> (H, W) bool."""
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def _bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis, torch's bilinear rule (``align_corners=False``): output i samples the input
    at ``max((i + 0.5) * n_in / n_out - 0.5, 0)``; returns (lower index, upper index, lower
    weight, upper weight), weights float32."""
    scale = np.float32(n_in / n_out)
    src = np.maximum((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
    lo = src.astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo.astype(np.float32)
    return lo, hi, np.float32(1) - frac, frac


def resize_bilinear(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 -> (h, w) float32 by ``F.interpolate(mode="bilinear",
    align_corners=False)``'s rule (half-pixel centres, edges clamped, no antialiasing; along the
    width first, then the height, in float32): within 2e-6 of it (its kernels fuse some products).

    Written here rather than taken from ``cv2.resize``, so that Mask R-CNN's masks, pasted with
    it, are torchvision's on every OpenCV version: their parity does not rest on a library's
    rounding."""
    h, w = size_hw
    x0, x1, wx0, wx1 = _bilinear_taps(image.shape[1], w)
    y0, y1, wy0, wy1 = _bilinear_taps(image.shape[0], h)
    rows = image[:, x0] * wx0 + image[:, x1] * wx1
    return rows[y0] * wy0[:, None] + rows[y1] * wy1[:, None]


def paste_masks(masks: np.ndarray, boxes: np.ndarray, frame_hw: tuple[int, int], threshold: float = 0.5) -> BoxMasks:
    """Mask R-CNN mask paste (torchvision ``paste_masks_in_image``), one crop per box.

    masks: (N, M, M) float probabilities on each box's grid. boxes: (N, 4) xyxy in frame pixels.
    As torchvision does, the mask gets a one-cell zero border, the box grows by (M + 2) / M and
    is truncated to integers, the padded mask is resized bilinearly (``resize_bilinear``) to
    ``(y2 - y1 + 1, x2 - x1 + 1)`` and thresholded at ``> threshold``; the part inside the frame
    becomes region i. Only box regions are touched, never the whole frame.
    """
    h, w = frame_hw
    n = len(masks)
    if n == 0:
        return BoxMasks((), np.zeros((0, 4), np.int32), (h, w))
    m = masks.shape[-1]
    padded = np.pad(masks.astype(np.float32, copy=False), ((0, 0), (1, 1), (1, 1)))
    scale = np.float32((m + 2) / m)
    boxes = boxes.astype(np.float32, copy=False)
    half = (boxes[:, 2:] - boxes[:, :2]) * np.float32(0.5) * scale
    centre = (boxes[:, 2:] + boxes[:, :2]) * np.float32(0.5)
    grown = np.trunc(np.concatenate([centre - half, centre + half], axis=1)).astype(np.int64)
    crops, regions = [], np.zeros((n, 4), np.int32)
    for i, (bx1, by1, bx2, by2) in enumerate(grown):
        bw, bh = max(int(bx2 - bx1 + 1), 1), max(int(by2 - by1 + 1), 1)
        x0, y0 = min(max(bx1, 0), w), min(max(by1, 0), h)
        x1, y1 = max(min(bx2 + 1, w), x0), max(min(by2 + 1, h), y0)
        resized = resize_bilinear(padded[i], (bh, bw))
        crops.append(resized[y0 - by1 : y1 - by1, x0 - bx1 : x1 - bx1] > threshold)
        regions[i] = (x0, y0, x1, y1)
    return BoxMasks(tuple(crops), regions, (h, w))
