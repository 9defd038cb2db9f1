"""A generated tracker benchmark: same-class look-alikes that cross, stop, hide and come and go,
seen by a static camera, with exact identities.

Trackers exchange ids where two objects of one class that look alike pass each other in the
picture. ``CrossingScene`` stages that on purpose in the demo's road world (``Scene``'s camera,
lighting, noise and drawing, which the ``demo`` model was trained on), seen from a parked car:
the camera does not move, so the world does not flow past. From one seed it scripts:

- crossings: pairs of pedestrians walking across the road in opposite directions at nearly the
  same depth, pairs of cars passing each other in the two lanes of a cross street, pairs of
  cyclists riding across; the two of a pair look alike (colours a few levels apart, sizes a few
  per cent apart), so appearance helps a little but colour alone does not settle it;
- stops: some movers stand still for a while (20-60 frames) and go on;
- hiding: an advertising pillar near the camera (scenery, no detection class, drawn like a
  sign's pole: it hides what is behind it) that one walker (``CrossingScene.hider``) is scripted
  to pass behind, wholly hidden for about 8-20 frames, and out the other side; others pass
  behind it too, and the near one of a crossing pair hides the far one for a few frames;
- entering and leaving: movers start outside the picture (or part-way across it) and walk,
  ride or drive out of it; a few cars drive up or down the main road.

``write_crossing_clip`` writes the video and COCO ground truth as ``pipeline.demo.clip`` does
(same encoder settings, same annotation format with ``track_id`` and ``iscrowd``) and
``crossings.json``: the crossings found in the ground truth (not the script), see
``true_crossings``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from pipeline.demo.clip import coco_annotations
from pipeline.demo.scenes import CAR, CLASSES, CYCLIST, FPS, LANE, ONE, OTHER, PEDESTRIAN, ROAD, SHIFT, Painter, Scene, Thing
from pipeline.demo.truth import mot_rows
from pipeline.ops.boxes import box_iou
from pipeline.sinks import VideoSink, write_complete
from pipeline.types import Detections, Frame

PILLAR = -1  # Thing.kind of the scenery occluder (not a detection class)
CROSS_STREET = (19.0, 26.0)  # metres ahead: the near and far kerb of the street crossing the road
CROSS_LANES = (20.8, 24.3)   # its two lanes (cars drive right in the near one, left in the far one)
EVENT_KINDS = (PEDESTRIAN, CAR, PEDESTRIAN, CYCLIST)  # the staged crossings, in turn from a random start
HIDE_FRAMES = (8, 16)        # how long the scripted walker is wholly behind the pillar
CROSSING_IOU = 0.1           # boxes this close count as touching (or one's centre inside the other)
CROSSING_GAP = 30            # frames: a pair seen apart for longer starts a new encounter
CROSSING_MERGE = 15          # frames: order flips closer than this are one passage (a wobble while hidden)


@dataclass
class Mover:
    """A scripted object: its ``Thing`` (position at frame 0, velocity in m/s) and when it stands still."""

    thing: Thing
    stops: list[tuple[int, int]] = field(default_factory=list)  # (first frame, frames) it does not move

    def moving(self, frame: int) -> bool:
        return not any(s <= frame < s + n for s, n in self.stops)


def moving_frames(stops: list[tuple[int, int]], until: int) -> int:
    """How many of the frames 0..until-1 a mover with ``stops`` moves in."""
    return until - sum(max(0, min(until, s + n) - s) for s, n in stops if s < until)


def _start_x(vx: float, frame: int, x: float, stops) -> float:
    """The x at frame 0 of a mover at ``vx`` m/s that is at ``x`` at ``frame``, having stood still in ``stops``."""
    return x - vx * moving_frames(stops, frame) / FPS


class CrossingScene(Scene):
    """``CrossingScene(seed, w, h, frames).frames(n)`` yields ``Rendered`` frames of a scripted,
    static-camera clip; ``frames`` is the length the script is planned for (events are spread
    over it). The camera, lighting, background and noise are drawn as ``Scene`` draws them from
    the same seed; the objects come from the script. ``hider``: the track id of the walker
    scripted to pass wholly behind the pillar."""

    def __init__(self, seed: int, width: int = 1280, height: int = 720, frames: int = 300):
        super().__init__(seed, width, height)
        self.things, self.movers, self.next_id, self.frame, self.planned = [], [], 0, 0, int(frames)
        # The camera stands still: the lane marks are painted once into the background (the
        # frames then never move them), and ``travelled`` only drives Scene's lighting drift,
        # which reads travelled / speed as the clock.
        self._paint_cross_street()
        Scene._lane_marks(self, self.background, self.background_labels)
        self._script()

    # --- the script --------------------------------------------------------------------------

    def _script(self) -> None:
        rng, frames = self.rng, self.planned
        self._add_pillar()
        n = max(1, round(frames / 60))  # staged crossings: 5 in 300 frames
        first = int(rng.integers(len(EVENT_KINDS)))
        for k in range(n):
            meet = int((k + rng.uniform(0.35, 0.65)) * frames / n)
            kind = EVENT_KINDS[(first + k) % len(EVENT_KINDS)]
            self._stage_pair(kind, meet)
        self._stage_hider(int(rng.uniform(0.25, 0.75) * frames))
        for _ in range(int(rng.integers(1, 3))):  # traffic up and down the main road
            self._add_road_car(int(rng.uniform(0, 0.7) * frames))

    def _new(self, kind: int, x: float, z: float, vx: float, vz: float, width: float, height: float, colors,
             stops=(), style: int = 0) -> Mover:
        t = Thing(self.next_id, kind, x, z, vx, vz, width, height, [tuple(int(c) for c in col) for col in colors],
                  style=style, phase=float(self.rng.uniform(0, 6.28)))
        self.next_id += 1
        m = Mover(t, list(stops))
        self.movers.append(m)
        self.things.append(t)
        return m

    def _look_alike(self, n: int) -> list[list[np.ndarray]]:
        """``n`` colour sets (3 colours each) that differ by a few levels per channel: a base
        colour, muted towards grey, and small offsets of it."""
        rng = self.rng
        base = []
        for _ in range(3):
            c = rng.integers(40, 216, 3).astype(float)
            base.append(c.mean() + (c - c.mean()) * rng.uniform(0.2, 0.6))  # grey-ish
        return [[np.clip(c + rng.integers(-16, 17, 3), 0, 255) for c in base] for _ in range(n)]

    def _stops(self, meet: int) -> list[tuple[int, int]]:
        """Now and then a stop of 20-60 frames, before or after the meeting (or in it)."""
        rng = self.rng
        if rng.random() > 0.45:
            return []
        start = int(np.clip(meet + rng.integers(-60, 40), 1, None))
        return [(start, int(rng.integers(20, 61)))]

    def _stage_pair(self, kind: int, meet: int) -> None:
        """Two look-alikes of ``kind`` moving across the picture in opposite directions, level with
        each other at frame ``meet`` somewhere in the middle half of the picture."""
        rng = self.rng
        if kind == CAR:
            depths = list(CROSS_LANES)
            speeds = rng.uniform(5, 9, 2)
        elif kind == CYCLIST:
            z = rng.uniform(9, 16)
            depths = [z, z + rng.uniform(-0.8, 0.8)]
            speeds = rng.uniform(2.5, 4.5, 2)
        else:
            z = rng.uniform(7, 15)
            depths = [z, z + rng.uniform(-0.6, 0.6)]
            speeds = rng.uniform(1.1, 1.8, 2)
        zm = min(depths)
        meet_x = (rng.uniform(0.25, 0.75) - 0.5) * self.w * zm / self.focal  # in the middle half of the picture
        looks = self._look_alike(2)
        size = rng.uniform(0.94, 1.06, (2, 2))
        for direction, z, v, col, (sw, sh) in zip((1, -1), depths, speeds, looks, size):  # cars: right in the near lane
            stops = self._stops(meet)
            x0 = _start_x(v * direction, meet, meet_x * z / zm, stops)
            if kind == CAR:
                self._new(CAR, x0, z, direction * v, 0.0, 1.8 * sw, 1.55 * sh, col, stops, style=int(rng.integers(0, 2)))
            elif kind == CYCLIST:
                self._new(CYCLIST, x0, z, direction * v, 0.0, 1.72 * sw, 1.72 * sh, col, stops, style=int(direction > 0))
            else:
                self._new(PEDESTRIAN, x0, z, direction * v, 0.0, 0.52 * sw, 1.75 * sh, col, stops)

    def _add_pillar(self) -> None:
        """The occluder: an advertising pillar on a traffic island 6-9 m ahead, a third of the way
        in from either side of the picture. Its width is set by ``_stage_hider``."""
        rng = self.rng
        z = rng.uniform(6, 9)
        x = (rng.choice([0.3, 0.7]) + rng.uniform(-0.05, 0.05) - 0.5) * self.w * z / self.focal
        colors = [rng.integers(30, 200, 3) for _ in range(3)]
        self.pillar = Thing(-1, PILLAR, x, z, 0.0, 0.0, 1.0, rng.uniform(2.6, 3.0), [tuple(int(c) for c in col) for col in colors])
        self.things.append(self.pillar)

    def _stage_hider(self, centre: int) -> None:
        """A walker that passes behind the pillar at frame ``centre``, wholly hidden for
        ``HIDE_FRAMES`` frames: the pillar is made just wide enough (its shadow at the walker's
        depth is the walker's drawn width plus the distance walked while hidden). Arms and legs
        swing, so the span comes out a few frames either way (9-20 in seeds 1-8 at four sizes)."""
        rng, p = self.rng, self.pillar
        z = p.z + rng.uniform(3, 6)
        v = rng.uniform(1.2, 1.6)
        hide = rng.uniform(*HIDE_FRAMES)
        width = rng.uniform(0.48, 0.56)
        drawn = width + 0.1  # swinging arms reach past the shirt (not in every frame)
        shadow = drawn + v * hide / FPS
        p.width = shadow * p.z / z
        direction = 1 if rng.random() < 0.5 else -1
        look = self._look_alike(1)[0]
        x0 = _start_x(v * direction, centre, p.x * z / p.z, [])
        self.hider = self._new(PEDESTRIAN, x0, z, direction * v, 0.0, width, rng.uniform(1.6, 1.8), look).thing.id

    def _add_road_car(self, start: int) -> None:
        """A car driving up the main road away from the camera, or coming down it towards it."""
        rng = self.rng
        lane = LANE * int(rng.choice([-1, 1])) + rng.uniform(-0.3, 0.3)
        colors = [rng.integers(20, 236, 3) for _ in range(3)]
        if rng.random() < 0.5:
            v = rng.uniform(4, 8)
            z0 = 3.2 - v * start / FPS   # comes in from below the picture at frame ``start``
        else:
            v = -rng.uniform(4, 8)
            z0 = 55 - v * start / FPS    # comes out of the distance at frame ``start``
        self._new(CAR, lane, z0, 0.0, v, rng.uniform(1.6, 2.0), rng.uniform(1.3, 1.7), colors, style=int(rng.integers(0, 2)))

    # --- the world, the Scene's hooks --------------------------------------------------------

    def _step(self) -> None:
        dt = 1 / FPS
        self.travelled += self.speed * dt  # the lighting's clock only (see __init__)
        for m in self.movers:
            if m.moving(self.frame):
                t = m.thing
                t.x += t.vx * dt
                t.z += t.vz * dt
                t.phase += dt * (7 if t.kind == PEDESTRIAN else 9)
        self.frame += 1
        gone = {id(m.thing) for m in self.movers if self._gone(m.thing)}
        self.movers = [m for m in self.movers if id(m.thing) not in gone]
        self.things = [t for t in self.things if id(t) not in gone]

    def _gone(self, t: Thing) -> bool:
        """Out of the picture for good: past the side it walks towards, or off the road's ends."""
        if t.vz > 0 and t.z > 60 or t.vz < 0 and t.z < 3:
            return True
        if t.z <= 3:  # not yet in (a car that will come in from below)
            return False
        edge = self._edge_x(t.z) + t.width
        return t.vx > 0 and t.x > edge or t.vx < 0 and t.x < -edge

    def _lane_marks(self, img: np.ndarray, labels: np.ndarray) -> None:
        """Painted once into the background (the camera does not move)."""

    def _draw(self, img: np.ndarray, owner: np.ndarray, t: Thing, labels: np.ndarray):
        if t.kind != PILLAR:
            if t.z <= 3:  # not yet in the picture (a car yet to come in from below)
                return None
            return super()._draw(img, owner, t, labels)
        s = self.focal / t.z
        cx, base = self._project(t.x, t.z)
        x0, x1 = int(max(cx - t.width * s / 2 - 3, 0)), int(min(cx + t.width * s / 2 + 3, self.w))
        y0, y1 = int(max(base - t.height * s - 3, 0)), int(min(base + 3, self.h))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        canvas = img[y0:y1, x0:x1]
        mask, clutter = np.zeros(canvas.shape[:2], np.uint8), np.zeros(canvas.shape[:2], np.uint8)
        p = Painter(canvas, mask, clutter, (cx - x0) * ONE, (base - y0) * ONE, s * ONE)
        r, h = t.width / 2, t.height
        body, poster, trim = t.colors
        p.box(-r, 0.0, r, h, body, part=False)                       # the column
        p.box(-r * 0.85, 0.35 * h, r * 0.85, 0.85 * h, poster, part=False)  # its poster
        p.box(-r * 0.6, 0.5 * h, r * 0.3, 0.62 * h, trim, part=False)
        p.box(-r * 1.08, 0.93 * h, r * 1.08, h, trim, part=False)     # the cap
        owner[y0:y1, x0:x1][clutter > 0] = -1
        labels[y0:y1, x0:x1][clutter > 0] = OTHER
        return None

    def _paint_cross_street(self) -> None:
        """The street crossing the road between the kerbs ``CROSS_STREET``: asphalt, into the background."""
        near, far = CROSS_STREET
        span = 400.0
        quad = np.array([self._project(-span, far), self._project(span, far), self._project(span, near),
                         self._project(-span, near)], np.float32)
        pts = [np.round(quad * ONE).astype(np.int32)]
        colour = self.background[min(self.h - 1, int(self._project(0, 10)[1]))][self.w // 2].tolist()  # the road's asphalt
        cv2.fillPoly(self.background, pts, colour, cv2.LINE_AA, SHIFT)
        cv2.fillPoly(self.background_labels, pts, ROAD, cv2.LINE_8, SHIFT)


# --- ground truth ------------------------------------------------------------------------------

def _inside(point, box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _touching(a, b) -> bool:
    """Boxes (xyxy) that overlap with IoU > 0.1, or where one's centre lies in the other."""
    ca, cb = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2), ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    iou = float(box_iou(np.array([a], np.float64), np.array([b], np.float64))[0, 0])
    return iou > CROSSING_IOU or _inside(ca, b) or _inside(cb, a)


def true_crossings(annotations: list[dict], frame_of: dict[int, int], categories: dict[int, str]) -> list[dict]:
    """The crossings in COCO ``annotations`` (with ``track_id``; ``frame_of``: image id -> frame
    index; ``categories``: id -> name): ``[{"frame", "ids": [a, b], "class"}]`` sorted by frame.

    Rule: for each pair of tracks of one class, over the frames where both are annotated
    (iscrowd ones included: a half-hidden object is still there), the sign of the difference of
    their box centres' x is followed. A flip counts where the boxes touch (IoU > 0.1, or one's
    centre inside the other's box) on the frame before or after it (both may be either side of
    a gap in which one was wholly hidden by the other). Flips less than ``CROSSING_MERGE`` frames
    apart are one passage (a visible box wobbles as one is hidden and shown), and a passage is a
    crossing when the order after it is the opposite of the order before it; its frame is the
    first frame of the final order. Sightings more than ``CROSSING_GAP`` frames apart are separate
    encounters.
    """
    tracks: dict[int, dict[int, list[float]]] = {}
    cls: dict[int, int] = {}
    for a in annotations:
        x, y, w, h = a["bbox"]
        tracks.setdefault(a["track_id"], {})[frame_of[a["image_id"]]] = [x, y, x + w, y + h]
        cls[a["track_id"]] = a["category_id"]
    out = []
    ids = sorted(tracks)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if cls[a] != cls[b]:
                continue
            common = sorted(set(tracks[a]) & set(tracks[b]))
            if len(common) < 2:
                continue
            sign = [np.sign((tracks[a][f][0] + tracks[a][f][2]) - (tracks[b][f][0] + tracks[b][f][2])) for f in common]
            flips = []  # (frame before, frame after, sign after)
            for k in range(1, len(common)):
                f0, f1 = common[k - 1], common[k]
                s0 = next((s for s in reversed(sign[:k]) if s), 0)
                if f1 - f0 > CROSSING_GAP or not sign[k] or not s0 or sign[k] == s0:
                    continue
                if _touching(tracks[a][f0], tracks[b][f0]) or _touching(tracks[a][f1], tracks[b][f1]):
                    flips.append((f0, f1, sign[k], s0))
            k = 0
            while k < len(flips):
                j = k
                while j + 1 < len(flips) and flips[j + 1][0] - flips[j][1] < CROSSING_MERGE:
                    j += 1
                if flips[j][2] != flips[k][3]:
                    out.append({"frame": int(flips[j][1]), "ids": [int(a), int(b)], "class": categories[cls[a]]})
                k = j + 1
    return sorted(out, key=lambda c: (c["frame"], c["ids"]))


def write_crossing_clip(out_dir: str | Path, seed: int, frames: int = 300, size: tuple[int, int] = (1280, 720),
                        progress: Callable[[int], None] | None = None) -> tuple[Path, Path]:
    """Render the crossings clip ``seed`` -> (``clip.mp4``, ``ground_truth.json``) in ``out_dir``,
    and beside them ``ground_truth_mot.txt`` (MOTChallenge rows) and ``crossings.json``
    (``{"crossings": [{"frame", "ids": [a, b], "class"}]}``, see ``true_crossings``).

    Written as ``pipeline.demo.clip.write_clip`` writes the demo clip: H.264 at crf 16, COCO
    images numbered ``frame_index + 1`` carrying ``frame_index``, annotations with ``track_id``
    and ``iscrowd``, every file under a partial name until complete. No semantic label maps.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video_path, gt_path = out / "clip.mp4", out / "ground_truth.json"
    w, h = size
    video = VideoSink(video_path, Fraction(FPS), crf=16, preset="veryfast")
    images, annotations, mot = [], [], []
    complete = False
    try:
        for i, rendered in enumerate(CrossingScene(seed, w, h, frames).frames(frames)):
            video.write(Frame(rendered.image, i, i / FPS, 0.0), Detections.empty(), None)
            images.append({"id": i + 1, "frame_index": i, "file_name": f"clip.mp4#{i}", "width": w, "height": h})
            annotations += coco_annotations(rendered, i + 1, len(annotations) + 1)
            mot += mot_rows(rendered, i)
            if progress is not None:
                progress(i + 1)
        complete = True
    finally:
        video.close(complete)
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(CLASSES)]
    gt = {"info": {"description": f"rtpipe generated crossings clip, seed {seed}, {frames} frames at {w}x{h}",
                   "generator": "pipeline.demo.crossings", "seed": seed, "fps": FPS},
          "images": images, "annotations": annotations, "categories": categories}
    write_complete(gt_path, json.dumps(gt, separators=(",", ":")))
    write_complete(out / "ground_truth_mot.txt", "".join(row + "\n" for row in mot))
    events = true_crossings(annotations, {im["id"]: im["frame_index"] for im in images},
                            {c["id"]: c["name"] for c in categories})
    write_complete(out / "crossings.json", json.dumps({"crossings": events}, indent=1))
    return video_path, gt_path
