"""Generated dashcam clips with exact ground truth: the demo model's training data and test clips.

A small world seen from a car driving down a three-lane road: a pinhole camera at 1.4 m looks
along the road; cars drive in the lanes, pedestrians and cyclists cross or walk the kerb,
traffic signs stand by the road and come closer as the camera drives on (a sign is its plate;
its pole is scenery, as in Cityscapes or Mapillary, where poles are a class of their own). Objects are drawn
far to near, so near ones hide far ones; each pixel remembers which object drew it last, which
gives every instance its visible mask. Then the whole frame gets the clip's lighting (a slow
brightness drift), blur and sensor noise.

Everything comes from one seed (``numpy.random.default_rng``): the same seed gives the same
clip, pixel for pixel, at the same size.

Ground truth is COCO: one image per frame, one annotation per visible instance with its
visible box and mask (RLE). Instances with little left in view (a sliver at the frame edge,
mostly hidden behind another object) are marked ``iscrowd`` so that COCO evaluation neither
demands nor punishes detecting them. Every frame also has a semantic label map (``SEMANTIC``:
sky, road, lane marking, sidewalk, and "other" for objects, poles and buildings), drawn with the
same shapes, without antialiasing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

CLASSES = ("car", "pedestrian", "cyclist", "traffic sign")
CAR, PEDESTRIAN, CYCLIST, SIGN = range(4)
# semantic classes of every pixel ("other": objects, poles, buildings and trees)
SEMANTIC = ("other", "sky", "road", "lane marking", "sidewalk")
OTHER, SKY, ROAD, MARK, SIDEWALK = range(5)
SPAWN_WEIGHTS = np.array([0.35, 0.25, 0.2, 0.2])
FPS = 30
CAMERA_HEIGHT = 1.4  # metres above the road
LANE = 3.5           # metres
MAX_OBJECTS = 12
MIN_AREA = 0.0005    # of the frame: smaller visible instances are marked iscrowd
MIN_VISIBLE = 0.3    # of the instance's pixels in view: less visible instances are marked iscrowd
SHIFT = 4            # cv2 fixed-point bits: sub-pixel placement of every shape
ONE = 1 << SHIFT


@dataclass
class Thing:
    """One object in the world: ground position (x right, z ahead; metres), size, motion, look."""

    id: int
    kind: int
    x: float
    z: float
    vx: float
    vz: float  # metres per second, relative to the camera
    width: float
    height: float
    colors: list[tuple[int, int, int]]
    style: int = 0      # shape variant (sign plate, facing direction)
    phase: float = 0.0  # walking / pedalling phase
    lift: float = 0.0   # sign: plate height above the road


@dataclass
class Instance:
    """One object's ground truth in one frame (frame pixels)."""

    id: int
    category: int                 # index into CLASSES
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 of the visible mask, x2/y2 exclusive
    area: int                       # visible pixels
    drawn: int                      # pixels it drew in view before nearer objects covered some
    crowd: bool
    crop: np.ndarray = field(repr=False)  # (y2 - y1, x2 - x1) bool visible mask


@dataclass
class Rendered:
    image: np.ndarray           # (H, W, 3) uint8 BGR
    instances: list[Instance]
    owner: np.ndarray           # (H, W) int16: instance id that drew each pixel, -1 for background
    labels: np.ndarray | None = None  # (H, W) uint8: each pixel's SEMANTIC class


class Scene:
    """A deterministic clip: ``Scene(seed, 1280, 720).frames(n)`` yields ``Rendered`` frames."""

    def __init__(self, seed: int, width: int = 1280, height: int = 720):
        self.w, self.h = int(width), int(height)
        self.rng = rng = np.random.default_rng(seed)
        self.focal = self.w * rng.uniform(0.8, 1.0)
        self.horizon = self.h * rng.uniform(0.36, 0.46)
        self.speed = rng.uniform(4, 14)  # the camera's, metres per second
        self.gain = rng.uniform(0.65, 1.25)
        self.gain_swing, self.gain_period = rng.uniform(0, 0.25), rng.uniform(60, 240)
        self.tint = rng.uniform(0.85, 1.15, 3)
        self.blur = rng.uniform(0, 1.2) * self.w / 1280
        self.noise = rng.uniform(1, 7)
        self.background_labels = np.full((self.h, self.w), SKY, np.uint8)
        self.background = self._background()
        self.noises = [rng.normal(0, self.noise, (self.h, self.w, 3)).astype(np.int16) for _ in range(3)]
        self.things: list[Thing] = []
        self.next_id = 0
        self.travelled = 0.0
        for _ in range(int(rng.integers(5, 10))):
            self._spawn(initial=True)

    # --- the world ---------------------------------------------------------------------------

    def _spawn(self, initial: bool = False) -> None:
        rng = self.rng
        kind = int(rng.choice(4, p=SPAWN_WEIGHTS))
        colors = [tuple(int(c) for c in rng.integers(20, 236, 3)) for _ in range(3)]
        side = 1 if rng.random() < 0.5 else -1
        if kind == CAR:
            z = rng.uniform(7, 38) if initial else (rng.uniform(32, 40) if rng.random() < 0.7 else 6.5)
            vz = rng.uniform(-7, 4)
            if not initial and z < 10:
                vz = rng.uniform(1, 5)  # overtaking us: comes in from below
            t = Thing(self.next_id, kind, LANE * int(rng.integers(-1, 2)) + rng.uniform(-0.4, 0.4), z, rng.uniform(-0.3, 0.3), vz,
                      rng.uniform(1.6, 2.0), rng.uniform(1.3, 1.8), colors, style=int(rng.integers(0, 2)))
        elif kind == PEDESTRIAN:  # walking along the kerb, or crossing (the camera's car slows down for them)
            crossing = rng.random() < 0.5
            z = rng.uniform(6, 28)
            x = side * rng.uniform(5.5, 8.5) if not crossing or initial else side * (self._edge_x(z) + 0.5)
            if crossing:
                vx, vz = -side * rng.uniform(0.8, 1.6), -self.speed * 0.15
            else:
                vx, vz = rng.uniform(-0.3, 0.3), -self.speed + rng.uniform(-1.5, 1.5)
            t = Thing(self.next_id, kind, x, z, vx, vz, rng.uniform(0.45, 0.6), rng.uniform(1.55, 1.95), colors, phase=rng.uniform(0, 6.28))
        elif kind == CYCLIST:  # crossing from one side (slowly approached, like pedestrians)
            z = rng.uniform(7, 26)
            x = side * rng.uniform(4, 9) if initial else side * (self._edge_x(z) + 1)
            t = Thing(self.next_id, kind, x, z, -side * rng.uniform(2.5, 5), -self.speed * 0.1, rng.uniform(1.6, 1.85),
                      rng.uniform(1.6, 1.85), colors, style=int(-side > 0), phase=rng.uniform(0, 6.28))
        else:
            z = rng.uniform(8, 40) if initial else rng.uniform(36, 44)
            t = Thing(self.next_id, kind, side * rng.uniform(6.5, 8.5), z, 0.0, -self.speed, rng.uniform(0.6, 0.95),
                      0.0, colors, style=int(rng.integers(0, 4)), lift=rng.uniform(1.8, 2.6))
            t.height = t.lift + t.width / 2
        self.next_id += 1
        self.things.append(t)

    def _edge_x(self, z: float) -> float:
        """The lateral position (metres) of the frame's side edge at distance z."""
        return (self.w / 2) * z / self.focal

    def _step(self) -> None:
        dt = 1 / FPS
        self.travelled += self.speed * dt
        for t in self.things:
            t.x += t.vx * dt
            t.z += t.vz * dt
            t.phase += dt * (7 if t.kind == PEDESTRIAN else 9)
        self.things = [t for t in self.things if 3 < t.z < 50 and abs(t.x) < self._edge_x(t.z) + 3 + t.width]
        if len(self.things) < MAX_OBJECTS and self.rng.random() < 0.06:
            self._spawn()

    def _project(self, x: float, z: float, up: float = 0.0) -> tuple[float, float]:
        s = self.focal / z
        return self.w / 2 + x * s, self.horizon + (CAMERA_HEIGHT - up) * s

    # --- drawing -----------------------------------------------------------------------------

    def _background(self) -> np.ndarray:
        rng, w, h, hz = self.rng, self.w, self.h, int(self.horizon)
        y = np.linspace(0, 1, hz, dtype=np.float32)[:, None, None]
        top, low = rng.uniform(120, 255, 3), rng.uniform(150, 255, 3)
        img = np.empty((h, w, 3), np.float32)
        img[:hz] = top * (1 - y) + low * y
        ground = rng.uniform(60, 140, 3) * np.array([0.7, 1.1, 0.8])
        img[hz:] = ground
        # buildings and trees along the horizon: clutter that is not an object
        for _ in range(int(rng.integers(6, 18))):
            bw, bh = rng.uniform(0.03, 0.15) * w, rng.uniform(0.02, 0.12) * h
            x0 = rng.uniform(-0.1, 1.0) * w
            cv2.rectangle(img, (int(x0), int(hz - bh)), (int(x0 + bw), hz), rng.uniform(40, 200, 3).tolist(), -1)
            cv2.rectangle(self.background_labels, (int(x0), int(hz - bh)), (int(x0 + bw), hz), OTHER, -1)
        # the road: a trapezoid towards the vanishing point, asphalt texture
        road = np.array([self._project(-1.5 * LANE - 0.5, 200), self._project(1.5 * LANE + 0.5, 200),
                         self._project(1.5 * LANE + 0.5, 1.5), self._project(-1.5 * LANE - 0.5, 1.5)], np.float32)
        asphalt = rng.uniform(55, 110)
        cv2.fillPoly(img, [np.round(road * ONE).astype(np.int32)], (asphalt,) * 3, cv2.LINE_AA, SHIFT)
        self.background_labels[hz:] = SIDEWALK
        cv2.fillPoly(self.background_labels, [np.round(road * ONE).astype(np.int32)], ROAD, cv2.LINE_8, SHIFT)
        grain = cv2.GaussianBlur(rng.normal(0, 9, (h - hz, w)).astype(np.float32), (0, 0), 1.5)
        img[hz:] += grain[:, :, None]
        return img.clip(0, 255).astype(np.uint8)

    def _lane_marks(self, img: np.ndarray, labels: np.ndarray) -> None:
        dash, period = 3.0, 9.0
        offset = self.travelled % period
        for lx in (-LANE / 2, LANE / 2):
            for k in range(1, 14):
                z0 = k * period - offset
                z1 = z0 + dash
                if z0 < 2:
                    continue
                quad = [self._project(lx - 0.08, z0), self._project(lx + 0.08, z0), self._project(lx + 0.08, z1), self._project(lx - 0.08, z1)]
                poly = [np.round(np.array(quad) * ONE).astype(np.int32)]
                cv2.fillPoly(img, poly, (225, 225, 225), cv2.LINE_AA, SHIFT)
                cv2.fillPoly(labels, poly, MARK, cv2.LINE_8, SHIFT)
        for lx in (-1.5 * LANE, 1.5 * LANE):
            a, b = self._project(lx, 2), self._project(lx, 200)
            ends = (round(a[0] * ONE), round(a[1] * ONE)), (round(b[0] * ONE), round(b[1] * ONE))
            cv2.line(img, *ends, (235, 235, 235), max(1, int(self.w / 400)), cv2.LINE_AA, SHIFT)
            cv2.line(labels, *ends, MARK, max(1, int(self.w / 400)), cv2.LINE_8, SHIFT)

    def render_next(self) -> Rendered:
        img = self.background.copy()
        labels = self.background_labels.copy()
        self._lane_marks(img, labels)
        owner = np.full((self.h, self.w), -1, np.int16)
        drawn: dict[int, tuple[tuple[int, int, int, int], int, int]] = {}
        for t in sorted(self.things, key=lambda t: -t.z):
            result = self._draw(img, owner, t, labels)
            if result is not None:
                drawn[t.id] = result
        instances = []
        for tid, (roi, full, kind) in drawn.items():
            x0, y0, x1, y1 = roi
            vis = owner[y0:y1, x0:x1] == tid
            area = int(vis.sum())
            if area == 0:
                continue
            bx, by, bw, bh = cv2.boundingRect(vis.view(np.uint8))
            crowd = area < MIN_AREA * self.w * self.h or area < MIN_VISIBLE * full
            instances.append(Instance(tid, kind, (x0 + bx, y0 + by, x0 + bx + bw, y0 + by + bh), area, full, crowd,
                                      vis[by:by + bh, bx:bx + bw]))
        self._finish(img)
        self._step()
        return Rendered(img, instances, owner, labels)

    def skip(self) -> None:
        """Advance one frame without drawing it."""
        self._step()

    def frames(self, n: int) -> Iterator[Rendered]:
        for _ in range(n):
            yield self.render_next()

    def _finish(self, img: np.ndarray) -> None:
        """Lighting, blur and noise over the whole frame, in place."""
        k = self.gain * (1 + self.gain_swing * math.sin(2 * math.pi * self.travelled / self.speed * FPS / self.gain_period))
        lut = (np.arange(256, dtype=np.float32)[:, None] * (k * self.tint)).clip(0, 255).astype(np.uint8)
        cv2.LUT(img, lut.reshape(256, 1, 3), dst=img)
        if self.blur > 0.3:
            cv2.GaussianBlur(img, (0, 0), self.blur, dst=img)
        noise = self.noises[int(self.rng.integers(len(self.noises)))]
        cv2.add(img, noise, dst=img, dtype=cv2.CV_8U)

    def _draw(self, img: np.ndarray, owner: np.ndarray, t: Thing, labels: np.ndarray):
        """Draw one object; returns (roi, pixels drawn in view, class) or None when out of view."""
        s = self.focal / t.z
        cx, base = self._project(t.x, t.z)
        half = t.width * s / 2 + 2
        x0, x1 = int(max(cx - half * 1.3, 0)), int(min(cx + half * 1.3 + 2, self.w))
        y0, y1 = int(max(base - t.height * s - 3, 0)), int(min(base + 0.1 * s + 3, self.h))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        canvas = img[y0:y1, x0:x1]
        mask, clutter = np.zeros(canvas.shape[:2], np.uint8), np.zeros(canvas.shape[:2], np.uint8)
        p = Painter(canvas, mask, clutter, (cx - x0) * ONE, (base - y0) * ONE, s * ONE)
        [self._car, self._pedestrian, self._cyclist, self._sign][t.kind](p, t)
        full = int(np.count_nonzero(mask))
        if full == 0:
            return None
        owner[y0:y1, x0:x1][clutter > 0] = -1  # a sign's pole hides what is behind it but is no instance
        owner[y0:y1, x0:x1][mask > 0] = t.id
        labels[y0:y1, x0:x1][(mask > 0) | (clutter > 0)] = OTHER
        return (x0, y0, x1, y1), full, t.kind

    @staticmethod
    def _car(p: Painter, t: Thing) -> None:
        w, h = t.width, t.height
        body, glass = t.colors[0], tuple(int(c * 0.35) for c in t.colors[1])
        wheel = (25, 25, 25)
        p.box(-w / 2 + 0.1, 0.0, -w / 2 + 0.45, 0.45 * h, wheel)   # wheels below the body
        p.box(w / 2 - 0.45, 0.0, w / 2 - 0.1, 0.45 * h, wheel)
        p.poly([(-w / 2, 0.12 * h), (w / 2, 0.12 * h), (w / 2, 0.55 * h), (w / 2 - 0.1, 0.62 * h),
                (-w / 2 + 0.1, 0.62 * h), (-w / 2, 0.55 * h)], body)
        top = 0.3 if t.style else 0.18
        p.poly([(-w / 2 + 0.12, 0.6 * h), (w / 2 - 0.12, 0.6 * h), (w / 2 - top * w, h), (-w / 2 + top * w, h)], body)
        p.poly([(-w / 2 + 0.22, 0.64 * h), (w / 2 - 0.22, 0.64 * h), (w / 2 - top * w - 0.06, 0.95 * h),
                (-w / 2 + top * w + 0.06, 0.95 * h)], glass)
        p.box(-w / 2 + 0.08, 0.42 * h, -w / 2 + 0.35, 0.5 * h, (30, 30, 210))  # tail lights
        p.box(w / 2 - 0.35, 0.42 * h, w / 2 - 0.08, 0.5 * h, (30, 30, 210))
        p.box(-0.3, 0.2 * h, 0.3, 0.3 * h, (200, 200, 200))  # number plate

    @staticmethod
    def _pedestrian(p: Painter, t: Thing) -> None:
        h, w = t.height, t.width
        shirt, trousers = t.colors[0], t.colors[1]
        skin = (80 + t.colors[2][0] // 3, 110 + t.colors[2][0] // 3, 150 + t.colors[2][0] // 4)
        swing = 0.18 * math.sin(t.phase)
        hip = 0.5 * h
        p.poly([(-0.05 - 0.06, hip), (-0.05 + 0.06, hip), (-0.05 + swing + 0.06, 0), (-0.05 + swing - 0.06, 0)], trousers)
        p.poly([(0.05 - 0.06, hip), (0.05 + 0.06, hip), (0.05 - swing + 0.06, 0), (0.05 - swing - 0.06, 0)], trousers)
        p.poly([(-w / 2 + 0.05, hip - 0.02), (w / 2 - 0.05, hip - 0.02), (w / 2 - 0.02, 0.82 * h), (-w / 2 + 0.02, 0.82 * h)], shirt)
        p.poly([(w / 2 - 0.06, 0.8 * h), (w / 2, 0.8 * h), (w / 2 + swing * 0.5, 0.5 * h), (w / 2 - 0.08 + swing * 0.5, 0.5 * h)], shirt)
        p.poly([(-w / 2 + 0.06, 0.8 * h), (-w / 2, 0.8 * h), (-w / 2 - swing * 0.5, 0.5 * h), (-w / 2 + 0.08 - swing * 0.5, 0.5 * h)], shirt)
        p.circle(0, 0.9 * h, 0.1 * h, skin)

    @staticmethod
    def _cyclist(p: Painter, t: Thing) -> None:
        w, h = t.width, t.height
        d = 1 if t.style else -1  # riding right or left
        r = 0.34
        frame, rider, tyre = t.colors[0], t.colors[1], (30, 30, 30)
        for cx in (-w / 2 + r, w / 2 - r):  # wheels: tyre and a grey hub disc (no see-through spokes)
            p.circle(cx, r, r, tyre)
            p.circle(cx, r, r * 0.75, (150, 150, 150))
        back, front = (-d * (w / 2 - r), r), (d * (w / 2 - r), r)
        seat, bar = (-d * 0.2, 0.95), (d * 0.45, 1.05)
        for a, b in ((back, seat), (seat, (0.05 * d, r)), ((0.05 * d, r), back), ((0.05 * d, r), bar), (bar, front), (seat, bar)):
            p.line(a, b, 0.07, frame)
        pedal = (0.05 * d + 0.15 * math.cos(t.phase), r + 0.15 * math.sin(t.phase))
        p.line((seat[0], seat[1] + 0.05), pedal, 0.1, rider)
        p.poly([(seat[0] - 0.12, 0.95), (seat[0] + 0.12, 0.95), (d * 0.25 + 0.1, 1.5), (d * 0.25 - 0.12, 1.52)], rider)
        p.line((d * 0.22, 1.45), bar, 0.07, rider)
        p.circle(d * 0.3, h - 0.13, 0.13, (60, 90, 140))

    @staticmethod
    def _sign(p: Painter, t: Thing) -> None:
        r, lift = t.width / 2, t.lift
        p.box(-0.05, 0.0, 0.05, lift, (120, 120, 120), part=False)  # the pole is scenery: the sign is its plate
        red, white, blue, yellow = (40, 40, 200), (235, 235, 235), (170, 80, 20), (30, 200, 230)
        if t.style == 0:    # round: red ring, white face
            p.circle(0, lift, r, red)
            p.circle(0, lift, r * 0.75, white)
        elif t.style == 1:  # warning triangle
            tri = [(-r, lift - r * 0.6), (r, lift - r * 0.6), (0, lift + r)]
            p.poly(tri, red)
            p.poly([(x * 0.7, lift + (y - lift) * 0.7) for x, y in tri], white)
        elif t.style == 2:  # stop octagon
            p.poly([(r * math.cos(a), lift + r * math.sin(a)) for a in np.arange(8) * math.pi / 4 + math.pi / 8], red)
        else:               # blue square with a yellow diamond
            p.box(-r, lift - r, r, lift + r, blue)
            p.poly([(0, lift - r * 0.6), (r * 0.6, lift), (0, lift + r * 0.6), (-r * 0.6, lift)], yellow)


class Painter:
    """Draws shapes given in object metres (x right of the object's centre, y up from its base)
    into an image region and, at once, into the object's mask (or, for ``part=False``, into the
    clutter mask: drawn, hiding what is behind, but not part of the instance), with sub-pixel
    precision."""

    def __init__(self, canvas: np.ndarray, mask: np.ndarray, clutter: np.ndarray, ox: float, oy: float, scale: float):
        self.canvas, self.mask, self.clutter, self.ox, self.oy, self.s = canvas, mask, clutter, ox, oy, scale

    def _pt(self, x: float, y: float) -> tuple[int, int]:
        return round(self.ox + x * self.s), round(self.oy - y * self.s)

    def poly(self, pts, color, part: bool = True) -> None:
        arr = [np.array([self._pt(x, y) for x, y in pts], np.int32)]
        cv2.fillPoly(self.canvas, arr, color, cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.mask if part else self.clutter, arr, 255, cv2.LINE_8, SHIFT)

    def box(self, x0, y0, x1, y1, color, part: bool = True) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color, part)

    def circle(self, x, y, r, color) -> None:
        c, rad = self._pt(x, y), max(1, round(r * self.s))
        cv2.circle(self.canvas, c, rad, color, -1, cv2.LINE_8, SHIFT)
        cv2.circle(self.mask, c, rad, 255, -1, cv2.LINE_8, SHIFT)

    def line(self, a, b, thick, color) -> None:
        pa, pb, th = self._pt(*a), self._pt(*b), max(1, round(thick * self.s / ONE))
        cv2.line(self.canvas, pa, pb, color, th, cv2.LINE_8, SHIFT)
        cv2.line(self.mask, pa, pb, 255, th, cv2.LINE_8, SHIFT)
