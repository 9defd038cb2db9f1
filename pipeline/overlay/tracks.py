"""What the track stage adds to the picture (host side, on the drawn frame, either path):
each track's recent path, and the lines and zones with their counts.

These annotators take the whole ``Item`` (``annotate(image, item)``): they need the tracker
ids and the counts after the frame. They run in the overlay thread, one frame at a time.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from pipeline.analytics import Shape
from pipeline.overlay.host import class_colour, line_width


class TrailAnnotator:
    """The last ``length`` box centres of every track, as a line in its class colour."""

    def __init__(self, length: int):
        self.length = length
        self._paths: dict[tuple[int, int], tuple[deque, int, int]] = {}  # (source, id) -> (centres, class, last frame)

    def annotate(self, image: np.ndarray, item) -> None:
        dets, sid, index = item.detections, item.frame.source_id, item.frame.index
        if dets.tracker_id is not None:
            centres = (dets.xyxy[:, :2] + dets.xyxy[:, 2:]) / 2
            for tid, cid, c in zip(dets.tracker_id.tolist(), dets.class_id.tolist(), centres):
                if tid > 0:
                    path = self._paths.setdefault((sid, tid), (deque(maxlen=self.length), cid, index))[0]
                    path.append(c)
                    self._paths[(sid, tid)] = (path, cid, index)
        thick = line_width(image.shape[:2])
        for key, (path, cid, last) in list(self._paths.items()):
            if key[0] != sid:
                continue
            if index - last >= self.length:  # not seen for a whole trail: forget it
                del self._paths[key]
                continue
            if len(path) > 1:
                cv2.polylines(image, [np.round(np.array(path)).astype(np.int32)], False, class_colour(cid), thick, cv2.LINE_AA)


class CountsAnnotator:
    """Lines (with an arrow on their "in" side) and zones, each labelled with its counts."""

    LINE, ZONE = (0, 255, 255), (255, 160, 0)

    def __init__(self, shapes: list[Shape]):
        self.shapes = shapes

    def annotate(self, image: np.ndarray, item) -> None:
        h, w = image.shape[:2]
        thick = line_width((h, w))
        counts = item.counts or {}
        for s in self.shapes:
            pts = np.round(s.in_pixels(w, h)).astype(np.int32)
            c = counts.get(s.name, {})
            if s.kind == "line":
                cv2.line(image, tuple(pts[0]), tuple(pts[1]), self.LINE, thick + 1, cv2.LINE_AA)
                mid = (pts[0] + pts[1]) / 2
                d = (pts[1] - pts[0]) / max(np.hypot(*(pts[1] - pts[0])), 1)
                tip = mid + np.array([d[1], -d[0]]) * 12 * thick  # the "in" side: left of start -> end in the picture
                cv2.arrowedLine(image, tuple(np.round(mid).astype(int)), tuple(np.round(tip).astype(int)), self.LINE, thick,
                                cv2.LINE_AA, tipLength=0.4)
                text, colour, at = f"{s.name}: in {c.get('in', 0)} out {c.get('out', 0)}", self.LINE, pts.min(0)
            else:
                cv2.polylines(image, [pts], True, self.ZONE, thick + 1, cv2.LINE_AA)
                text = f"{s.name}: {c.get('inside', 0)} inside, {c.get('entries', 0)} in, {c.get('exits', 0)} out"
                colour, at = self.ZONE, pts.mean(0)  # inside the zone, so zones sharing a corner keep their labels apart
            self._label(image, text, colour, at, thick)

    @staticmethod
    def _label(image, text, colour, at, thick) -> None:
        font = 0.5 * thick
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        x = int(min(max(at[0], 0), max(image.shape[1] - tw - 4, 0)))
        y = int(min(max(at[1] - 4, th + base + 2), image.shape[0] - 2))
        cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 4, y + 2), (0, 0, 0), -1)
        cv2.putText(image, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, font, colour, thick, cv2.LINE_AA)
