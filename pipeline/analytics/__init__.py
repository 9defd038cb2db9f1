"""Counting what the tracker follows: lines crossed and polygon zones entered, as events.

A line ``NAME=x1,y1,x2,y2`` counts tracked objects whose box centre crosses the segment:
``line_out`` when the centre goes from the left of the line to its right, as seen looking from
(x1, y1) towards (x2, y2) in the picture, and ``line_in`` the other way: a line drawn left to
right counts objects moving up the picture as in, down as out (the overlay's arrow points to
the "in" side); a centre beyond the segment's ends is not counted.

A zone ``NAME=x1,y1,x2,y2,x3,y3[,...]`` is a polygon: ``zone_enter`` when a tracked object's
box centre comes inside, ``zone_exit`` when it is seen outside or has not been seen for the
tracker's memory, with the time it spent inside (``dwell_s``: from its first observation
inside to its first outside, or its last sighting).
Either change counts once the centre has been seen on the new side 3 times in a row
(``lines.CONFIRM_FRAMES``), so a box wobbling on a boundary counts once; an object keeps its
side for the tracker's memory while unseen. Coordinates are pixels, or fractions of the
frame's width and height when every one of them is at most 1 (``0,0.5,1,0.5``: across the
middle at any frame size). Only detections of confirmed tracks count.

Every count happens in an ``Event`` (the ``--events`` JSONL: one event per line).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict

from pipeline.config import ConfigError
from pipeline.types import Detections, Frame

EVENTS = ("line_in", "line_out", "zone_enter", "zone_exit")


class Event(BaseModel):
    """One counted moment (a line of the ``--events`` JSONL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frame: int                     # the frame's index within its source
    pts: float                     # the frame's time, seconds
    source_id: int
    tracker_id: int
    class_id: int
    class_name: str
    event: Literal[EVENTS]         # type: ignore[valid-type]
    name: str                      # the line's or zone's name
    dwell_s: float | None = None   # zone_exit: seconds from entering to leaving

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_json(cls, line: str) -> Event:
        return cls.model_validate_json(line)


@dataclass(frozen=True)
class Shape:
    """A line (2 points) or zone (3 or more) as given: pixels, or fractions of the frame."""

    kind: Literal["line", "zone"]
    name: str
    points: tuple[tuple[float, float], ...]

    @property
    def relative(self) -> bool:
        return all(0 <= v <= 1 for p in self.points for v in p)

    def in_pixels(self, width: int, height: int) -> np.ndarray:
        pts = np.array(self.points, np.float64)
        return pts * [width, height] if self.relative else pts


def parse_shape(kind: Literal["line", "zone"], text: str, index: int) -> Shape:
    """``[NAME=]x1,y1,x2,y2[,...]`` -> Shape (unnamed ones are line1, zone2, ...)."""
    name, sep, coords = str(text).partition("=")
    if not sep:
        name, coords = f"{kind}{index + 1}", name
    name = name.strip()
    example = "gate=0,0.6,1,0.6" if kind == "line" else "kerb=0.1,0.5,0.4,0.5,0.4,1,0.1,1"
    try:
        values = [float(v) for v in re.split(r"[,\s]+", coords.strip()) if v]
    except ValueError:
        values = []
    need = "4 numbers (x1,y1,x2,y2)" if kind == "line" else "at least 6 numbers (3 points)"
    if (kind == "line" and len(values) != 4) or (kind == "zone" and (len(values) < 6 or len(values) % 2)) \
            or not all(np.isfinite(values)) or any(v < 0 for v in values):
        raise ConfigError(f"--{kind} {text!r}: give [NAME=]{need}, pixels or fractions of the frame (0..1), "
                          f"none negative, e.g. {example}")
    if not re.fullmatch(r"[\w.\-]{1,64}", name):
        raise ConfigError(f"--{kind} {text!r}: a name is letters, digits, '_', '-' or '.' (at most 64)")
    points = tuple(zip(values[0::2], values[1::2]))
    if kind == "line" and points[0] == points[1]:
        raise ConfigError(f"--line {text!r}: the two points are the same: a line needs two different points")
    if kind == "zone" and abs(cv2.contourArea(np.array(points, np.float32))) == 0:
        raise ConfigError(f"--zone {text!r}: its points enclose no area (all on one line?): give a polygon")
    return Shape(kind, name, points)


def parse_shapes(lines: list[str], zones: list[str]) -> list[Shape]:
    shapes = [parse_shape("line", t, i) for i, t in enumerate(lines)] + [parse_shape("zone", t, i) for i, t in enumerate(zones)]
    names = [s.name for s in shapes]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"two lines or zones are called '{dup}': give each its own name (NAME=...)")
    return shapes


class Analytics:
    """The lines and zones of one source; ``update`` per frame, in order, returns its events."""

    def __init__(self, shapes: list[Shape], names: tuple[str, ...] | list[str], memory_s: float):
        self.shapes, self.names, self.memory_s = shapes, tuple(names), memory_s
        self.counters: list = []  # made at the first frame, when its size is known

    def _setup(self, frame: Frame) -> None:
        from pipeline.analytics.lines import LineCounter
        from pipeline.analytics.zones import ZoneCounter

        for s in self.shapes:
            pts = s.in_pixels(frame.width, frame.height)
            if pts[:, 0].min() >= frame.width or pts[:, 1].min() >= frame.height:
                warnings.warn(f"{s.kind} '{s.name}' lies outside the {frame.width}x{frame.height} frames of source "
                              f"{frame.source_id}: it will count nothing there", stacklevel=2)
            make = LineCounter if s.kind == "line" else ZoneCounter
            self.counters.append(make(s.name, pts, self.memory_s))

    def update(self, frame: Frame, detections: Detections, now: float | None = None) -> list[Event]:
        """The events of this frame; ``now``: the tracker's time for it (default its pts)."""
        if not self.shapes:
            return []
        if not self.counters:
            self._setup(frame)
        now = frame.pts if now is None else now
        ids = detections.tracker_id if detections.tracker_id is not None else np.zeros(len(detections), np.int64)
        keep = ids > 0
        centres = (detections.xyxy[keep, :2] + detections.xyxy[keep, 2:]) / 2
        found: list[tuple[int, int, str, str, float | None]] = []  # (tracker id, class id, event, name, dwell)
        for counter in self.counters:
            found += counter.update(ids[keep], detections.class_id[keep], centres.astype(np.float64), now)
        return [Event(frame=frame.index, pts=round(frame.pts, 6), source_id=frame.source_id, tracker_id=tid, class_id=cid,
                      class_name=self.names[cid] if 0 <= cid < len(self.names) else str(cid), event=kind, name=name,
                      dwell_s=None if dwell is None else round(dwell, 3))
                for tid, cid, kind, name, dwell in found]

    def counts(self) -> dict:
        """Now: per line {"in", "out"}; per zone {"inside", "entries", "exits"} (for the overlay and the metrics)."""
        return {c.name: c.counts() for c in self.counters}


def totals(events_by_source: list[Counter], shapes: list[Shape] = ()) -> dict:
    """Sum per-source Counters of (name, event, class_name) into {name: {event: {class: n, "all": n}}},
    with every event of every shape present (0 when nothing happened)."""
    out: dict = {s.name: {e: {"all": 0} for e in (EVENTS[:2] if s.kind == "line" else EVENTS[2:])} for s in shapes}
    for counter in events_by_source:
        for (name, event, cls), n in counter.items():
            per = out.setdefault(name, {}).setdefault(event, {"all": 0})
            per[cls] = per.get(cls, 0) + n
            per["all"] += n
    return out
