"""Tracking ground truth of a generated clip: MOTChallenge rows and the true line crossings.

The scene generator knows every object's identity, so both are exact. MOT rows are
``frame,id,x,y,w,h,consider,class,visibility`` (frame and id from 1, box of the visible mask,
``consider`` 0 for instances marked iscrowd, class 1..4 as in the COCO file, visibility the
share of the object's drawn pixels left in view). A crossing is counted when the centre of an
object's visible box, seen within the segment's span (instances marked iscrowd are not seen),
has been on the other side of the line for 3 observations in a row, as the line counter
counts (a visible box that wobbles on the line as the object is hidden and shown
crosses once), with the directions of ``pipeline.analytics``: looking from the line's first
point to its second, from its left to its right is ``out``. Objects keep their identity while
hidden, so a crossing made out of sight is counted too (a tracker may not see it).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline.analytics import Shape, totals
from pipeline.analytics.lines import LineCounter
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
    """True crossings of ``lines`` (Shapes of kind line) by the instances of a clip, fed frame by
    frame: the line counter (``pipeline.analytics.lines``) on the true identities, which are
    never forgotten."""

    def __init__(self, lines: list[Shape], width: int, height: int):
        self.shapes = [s for s in lines if s.kind == "line"]
        self.counters = [LineCounter(s.name, s.in_pixels(width, height), memory_s=float("inf")) for s in self.shapes]
        self.events: list[dict] = []

    def add(self, rendered: Rendered, frame_index: int) -> None:
        seen = [inst for inst in rendered.instances if not inst.crowd]
        if not seen:
            return
        boxes = np.array([inst.box for inst in seen], np.float64)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # the box's centre, as the detections' xyxy gives it
        ids = np.array([inst.id + 1 for inst in seen])
        classes = np.array([inst.category for inst in seen])
        for counter in self.counters:
            for tid, cid, event, name, _ in counter.update(ids, classes, centres, frame_index):
                self.events.append({"frame": frame_index, "id": tid, "class_name": CLASSES[cid], "event": event, "name": name})

    def totals(self) -> dict:
        """{line: {event: {class: n, "all": n}}}, every line and direction present."""
        return totals([Counter((e["name"], e["event"], e["class_name"]) for e in self.events)], self.shapes)
