"""Drawing on frames (numpy + OpenCV): annotators, configured once, each with one method,
``annotate(scene, detections)``, drawing its layer in place on an HxWx3 uint8 BGR scene:
``ClassMapAnnotator`` (semantic maps, with a legend), ``MaskAnnotator``, ``BoxAnnotator``,
``LabelAnnotator`` (with a crop classifier's label), ``TopLabelsAnnotator`` (a classifier's
labels of the frame) and ``HudAnnotator`` (run statistics).
The caller combines them; ``Overlay`` is the default stack (``draw`` for scripts). ``pipeline.overlay.device``
has the device twins of the mask and box annotators (same pixels, on the frame tensor)."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from pipeline.types import ClassMap, Detections


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


def line_width(hw: tuple[int, int]) -> int:
    """Box outline thickness for a frame size (1 px per 360 px of the short side)."""
    return max(1, round(min(hw) / 360))


class MaskAnnotator:
    """Tints every mask pixel with its class colour (``alpha`` of it); where masks overlap, the
    more confident one shows.

    Each mask is visited only inside its own region (minus the parts covered by more confident
    overlapping masks), and all tinted pixels are then blended in one vectorised pass: no array
    of frame size is allocated, per detection or at all.
    """

    def __init__(self, alpha: float = 0.45):
        self.alpha = alpha

    def annotate(self, scene: np.ndarray, detections: Detections) -> None:
        if detections.mask is None or len(detections) == 0:
            return
        h, w = scene.shape[:2]
        masks = detections.mask
        if masks.frame_hw != (h, w):
            raise ValueError(f"masks are {masks.frame_hw}, the frame is {(h, w)}")
        r = masks.regions
        order = np.argsort(-detections.confidence, kind="stable")  # most confident first
        ys, xs, owner = [], [], []
        for rank, i in enumerate(order):
            x1, y1, x2, y2 = r[i]
            visible = masks.crops[i]
            better = order[:rank]  # (one row at a time: memory grows with N, not N x N)
            over = (r[better, 0] < x2) & (x1 < r[better, 2]) & (r[better, 1] < y2) & (y1 < r[better, 3])
            for j in better[over]:
                a1, b1, a2, b2 = r[j]
                ox1, oy1, ox2, oy2 = max(x1, a1), max(y1, b1), min(x2, a2), min(y2, b2)
                if visible is masks.crops[i]:
                    visible = visible.copy()
                visible[oy1 - y1 : oy2 - y1, ox1 - x1 : ox2 - x1] &= ~masks.crops[j][oy1 - b1 : oy2 - b1, ox1 - a1 : ox2 - a1]
            yy, xx = np.nonzero(visible)
            ys.append(yy + y1)
            xs.append(xx + x1)
            owner.append(np.full(len(yy), i, np.int32))
        ys, xs, owner = np.concatenate(ys), np.concatenate(xs), np.concatenate(owner)
        if len(ys) == 0:
            return
        colours = PALETTE[detections.class_id % len(PALETTE)].astype(np.float32)
        px = scene[ys, xs].astype(np.float32)
        scene[ys, xs] = (px * (1 - self.alpha) + colours[owner] * self.alpha + 0.5).astype(np.uint8)


class BoxAnnotator:
    """Box outlines in class colours, ``line_width`` px, anti-aliased."""

    def annotate(self, scene: np.ndarray, detections: Detections) -> None:
        thick = line_width(scene.shape[:2])
        for (x1, y1, x2, y2), cid in zip(np.round(detections.xyxy).astype(int), detections.class_id):
            cv2.rectangle(scene, (x1, y1), (x2, y2), class_colour(cid), thick, cv2.LINE_AA)


class LabelAnnotator:
    """A "name score" label ("#id name score" for a tracked object, "... 42 km/h" once its speed
    is known) on a box of the class colour above each box (below it at the top edge)."""

    def __init__(self, names: tuple[str, ...] | list[str] = ()):
        self.names = tuple(names)

    def annotate(self, scene: np.ndarray, detections: Detections) -> None:
        h, w = scene.shape[:2]
        thick = line_width((h, w))
        font = 0.4 * thick
        ids = detections.tracker_id if detections.tracker_id is not None else np.zeros(len(detections), np.int64)
        crops, speeds, k = detections.crop_labels, detections.speed_kmh, 0
        for (x1, y1, _, _), score, cid, tid in zip(np.round(detections.xyxy).astype(int), detections.confidence,
                                                   detections.class_id, ids):
            col = class_colour(cid)
            name = self.names[cid] if 0 <= cid < len(self.names) else str(cid)
            text = f"#{tid} {name} {score:.2f}" if tid > 0 else f"{name} {score:.2f}"
            if speeds is not None and speeds[k] == speeds[k]:  # (NaN: no speed yet)
                text += f" {speeds[k]:.0f} km/h"
            if crops is not None:  # a classifier's label of this detection's crop
                text += f" | {crops.name(k)} {crops.confidence[k]:.2f}"
            k += 1
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
            ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
            tx = max(0, min(x1, w - tw - 2))  # keep the label inside the frame
            cv2.rectangle(scene, (tx, ty - th - base), (tx + tw + 2, ty + 1), col, -1)
            dark = sum(col) > 382
            cv2.putText(scene, text, (tx + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, font,
                        (0, 0, 0) if dark else (255, 255, 255), thick, cv2.LINE_AA)


class TopLabelsAnnotator:
    """A classifier's top labels of the whole frame (``Detections.labels``), top-right, best first."""

    def annotate(self, scene: np.ndarray, detections: Detections) -> None:
        labels = detections.labels
        if labels is None:
            return
        thick = line_width(scene.shape[:2])
        font = 0.5 * thick
        y = 0
        for k in range(len(labels)):
            text = f"{labels.name(k)} {labels.confidence[k]:.2f}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
            x = max(0, scene.shape[1] - tw - 12)
            cv2.rectangle(scene, (x, y), (scene.shape[1], y + th + base + 8), (0, 0, 0), -1)
            cv2.putText(scene, text, (x + 6, y + th + 4), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), thick, cv2.LINE_AA)
            y += th + base + 8


class HudAnnotator:
    """Run statistics top-left: ``{"fps": float | None, "latency_ms": float | None}``."""

    def annotate(self, scene: np.ndarray, stats: dict) -> None:
        thick = line_width(scene.shape[:2])
        font = 0.6 * thick
        fps, lat = stats.get("fps"), stats.get("latency_ms")
        text = f"{'-' if fps is None else f'{fps:.1f}'} FPS  {'-' if lat is None else f'{lat:.0f}'} ms"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        cv2.rectangle(scene, (0, 0), (tw + 12, th + base + 12), (0, 0, 0), -1)
        cv2.putText(scene, text, (6, th + 6), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), thick, cv2.LINE_AA)


class ClassMapAnnotator:
    """Tints every pixel of a semantic class map with its class colour (``alpha`` of it), class 0
    (the background) left as it is, and draws a legend of the classes present, bottom-left."""

    def __init__(self, names: tuple[str, ...] | list[str] = (), alpha: float = 0.45):
        self.names, self.alpha = tuple(names), alpha
        self._colours = np.ascontiguousarray(PALETTE[np.arange(256) % len(PALETTE)].reshape(256, 1, 3))  # BGR per class id (a LUT)

    def annotate(self, scene: np.ndarray, detections: Detections) -> None:
        cmap = detections.class_map
        if cmap is None:
            return
        if cmap.frame_hw != scene.shape[:2]:
            raise ValueError(f"the class map is {cmap.frame_hw}, the frame is {scene.shape[:2]}")
        ids = cmap.ids
        colour = cv2.LUT(cv2.merge([ids, ids, ids]), self._colours)
        blended = cv2.addWeighted(scene, 1 - self.alpha, colour, self.alpha, 0)  # rounded
        cv2.copyTo(scene, (ids == 0).view(np.uint8), blended)  # the background stays as it was
        scene[:] = blended
        self.legend(scene, cmap)

    def legend(self, scene: np.ndarray, cmap: ClassMap) -> None:
        """The legend alone: a swatch and the name of each class present but the background, bottom-left."""
        present = [c for c in cmap.areas() if c != 0]
        thick = line_width(scene.shape[:2])
        font, pad = 0.45 * thick, 4 * thick
        (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        row = th + base + pad
        y = scene.shape[0] - pad - row * len(present)
        for cid in present:
            name = self.names[cid] if cid < len(self.names) else str(cid)
            cv2.rectangle(scene, (pad, y), (pad + th, y + th), class_colour(cid), -1)
            cv2.putText(scene, name, (2 * pad + th, y + th), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick + 2, cv2.LINE_AA)
            cv2.putText(scene, name, (2 * pad + th, y + th), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), thick, cv2.LINE_AA)
            y += row


class Overlay:
    """The default stack, configured once: class map, masks, boxes, labels, and the HUD when asked."""

    def __init__(self, names: tuple[str, ...] | list[str] = (), mask_alpha: float = 0.45):
        self.classes, self.top = ClassMapAnnotator(names, mask_alpha), TopLabelsAnnotator()
        self.masks, self.boxes, self.labels = MaskAnnotator(mask_alpha), BoxAnnotator(), LabelAnnotator(names)
        self.hud = HudAnnotator()

    def draw(self, image: np.ndarray, detections: Detections, hud: dict | None = None) -> np.ndarray:
        """A new annotated copy of ``image`` (HxWx3 uint8 BGR); the input is not modified."""
        out = image.copy()
        for annotator in (self.classes, self.masks, self.boxes, self.labels, self.top):
            annotator.annotate(out, detections)
        if hud is not None:
            self.hud.annotate(out, hud)
        return out


def draw(image: np.ndarray, dets: Detections, names: tuple[str, ...] | list[str] = (), hud: dict | None = None,
         mask_alpha: float = 0.45) -> np.ndarray:
    """``Overlay(names, mask_alpha).draw(image, dets, hud)``, for scripts."""
    return Overlay(names, mask_alpha).draw(image, dets, hud)
