"""Drawing detections on a frame: masks, boxes, labels, and an optional HUD."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from pipeline.types import Detections


def _palette(n: int = 64) -> np.ndarray:
    """n well-separated BGR colours: hues stepped by the golden ratio, two brightness levels."""
    cols = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0 if i % 2 == 0 else 0.8)
        cols.append((int(b * 255), int(g * 255), int(r * 255)))
    return np.array(cols, dtype=np.uint8)


PALETTE = _palette()


def class_colour(class_id: int) -> tuple[int, int, int]:
    """The BGR colour of a class: the same id always gets the same colour."""
    c = PALETTE[int(class_id) % len(PALETTE)]
    return int(c[0]), int(c[1]), int(c[2])


def blend_masks(image: np.ndarray, dets: Detections, alpha: float = 0.45) -> None:
    """Tint every mask pixel with its class colour, in place.

    All masks are painted into one (H, W) label map (higher confidence on top), then blended
    in one vectorised pass; per detection only its mask's region is touched, so no full-frame
    array is allocated per detection.
    """
    if dets.mask is None or len(dets) == 0:
        return
    h, w = image.shape[:2]
    masks = dets.mask
    if masks.frame_hw != (h, w):
        raise ValueError(f"masks are {masks.frame_hw}, the frame is {(h, w)}")
    label = np.zeros((h, w), dtype=np.int32)
    for i in np.argsort(dets.confidence, kind="stable"):
        x1, y1, x2, y2 = masks.regions[i]
        label[y1:y2, x1:x2][masks.crops[i]] = i + 1
    ys, xs = np.nonzero(label)
    if len(ys) == 0:
        return
    lut = np.vstack([np.zeros((1, 3), np.uint8), PALETTE[dets.class_id % len(PALETTE)]]).astype(np.float32)
    px = image[ys, xs].astype(np.float32)
    image[ys, xs] = (px * (1 - alpha) + lut[label[ys, xs]] * alpha + 0.5).astype(np.uint8)


def draw(
    image: np.ndarray,
    dets: Detections,
    names: tuple[str, ...] | list[str] = (),
    hud: dict | None = None,
    mask_alpha: float = 0.45,
) -> np.ndarray:
    """A new annotated copy of ``image`` (HxWx3 uint8 BGR); the input is not modified.

    hud: optional {"fps": float | None, "latency_ms": float | None} drawn top-left.
    """
    out = image.copy()
    blend_masks(out, dets, mask_alpha)
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 360))
    font = 0.4 * thick
    for (x1, y1, x2, y2), score, cid in zip(np.round(dets.xyxy).astype(int), dets.confidence, dets.class_id):
        col = class_colour(cid)
        cv2.rectangle(out, (x1, y1), (x2, y2), col, thick, cv2.LINE_AA)
        name = names[cid] if 0 <= cid < len(names) else str(cid)
        text = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty + 1), col, -1)
        dark = sum(col) > 382
        cv2.putText(out, text, (x1 + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, font,
                    (0, 0, 0) if dark else (255, 255, 255), thick, cv2.LINE_AA)
    if hud is not None:
        fps, lat = hud.get("fps"), hud.get("latency_ms")
        text = f"{'-' if fps is None else f'{fps:.1f}'} FPS  {'-' if lat is None else f'{lat:.0f}'} ms"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font * 1.5, thick)
        cv2.rectangle(out, (0, 0), (tw + 12, th + base + 12), (0, 0, 0), -1)
        cv2.putText(out, text, (6, th + 6), cv2.FONT_HERSHEY_SIMPLEX, font * 1.5, (255, 255, 255), thick, cv2.LINE_AA)
    return out
