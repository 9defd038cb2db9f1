"""Tracking ground truth of a generated clip: MOTChallenge rows and the true line crossings.

The scene generator knows every object's identity, so both are exact. MOT rows are
``frame,id,x,y,w,h,consider,class,visibility`` (frame and id from 1, box of the visible mask,
``consider`` 0 for instances marked iscrowd, class 1..4 as in the COCO file, visibility the
share of the object's drawn pixels left in view). A crossing is counted when the centre of an
object's visible box, seen within the segment's span (instances marked iscrowd are not seen),
has been on the other side of the line for ``CONFIRM_FRAMES`` observations in a row, as the
line counter counts (a visible box that wobbles on the line as the object is hidden and shown
crosses once), with the directions of ``pipeline.analytics``: looking from the line's first
point to its second, from its left to its right is ``out``. Objects keep their identity while
hidden, so a crossing made out of sight is counted too (a tracker may not see it).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline.analytics import Shape
from pipeline.analytics.lines import CONFIRM_FRAMES
from pipeline.demo.scenes import CLASSES, Rendered


def mot_rows(rendered: Rendered, frame_index: int) -> list[str]:
    out = []
    for inst in rendered.instances:
        x1, y1, x2, y2 = inst.box
        visibility = inst.area / max(inst.drawn, 1)
        out.append(f"{frame_index + 1},{inst.id + 1},{x1},{y1},{x2 - x1},{y2 - y1},{0 if inst.crowd else 1},"
                   f"{inst.category + 1},{visibility:.3f}")
    return out


class CrossingCounter:
    """True crossings of ``lines`` (Shapes of kind line) by the instances of a clip, fed frame by frame."""

    def __init__(self, lines: list[Shape], width: int, height: int):
        self.lines = [(s.name, s.in_pixels(width, height)) for s in lines if s.kind == "line"]
        self.side: dict[tuple[str, int], list] = {}  # (line, id) -> [confirmed side (True: right), observations on the other]
        self.events: list[dict] = []

    def add(self, rendered: Rendered, frame_index: int) -> None:
        for inst in rendered.instances:
            if inst.crowd:
                continue
            x1, y1, x2, y2 = inst.box
            c = np.array([(x1 + x2) / 2, (y1 + y2) / 2])  # the box's centre, as the detections' xyxy gives it
            for name, (a, b) in self.lines:
                d = b - a
                along = float(np.dot(c - a, d)) / float(np.dot(d, d))
                if not 0 <= along <= 1:
                    continue
                right = float(d[0] * (c[1] - a[1]) - d[1] * (c[0] - a[0])) > 0
                state = self.side.setdefault((name, inst.id), [right, 0])
                state[1] = 0 if right == state[0] else state[1] + 1
                if state[1] >= CONFIRM_FRAMES:
                    self.events.append({"frame": frame_index, "id": inst.id + 1, "class_name": CLASSES[inst.category],
                                        "event": "line_out" if right else "line_in", "name": name})
                    state[:] = [right, 0]

    def totals(self) -> dict:
        """{line: {event: {class: n, "all": n}}}, every line and direction present."""
        count = Counter((e["name"], e["event"], e["class_name"]) for e in self.events)
        out = {name: {"line_in": {"all": 0}, "line_out": {"all": 0}} for name, _ in self.lines}
        for (name, event, cls), n in count.items():
            out[name][event][cls] = n
            out[name][event]["all"] += n
        return out
