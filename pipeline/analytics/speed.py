"""Speed over the ground: a ground-plane homography from four point pairs, and per-track speed.

``--calibrate "PIXELS=METRES"`` gives four points of the picture and the four points of the
ground they show: ``x1,y1,x2,y2,x3,y3,x4,y4=X1,Y1,X2,Y2,X3,Y3,X4,Y4``. The picture's points are
pixels, or fractions of the frame's width and height when every one of them is at most 1 (as
for ``--line``); the ground's are metres in any flat frame of reference on the ground (e.g. X
across the road, Y along it). Four corners of a lane segment whose width and dash spacing are
known are the usual choice. No three points on either side may lie on one line, and both sides
must list the points in the same order.

Each tracked detection's ground point (the bottom centre of its box) is mapped to metres with
the homography (``cv2.perspectiveTransform``); a track's speed is the slope of a least-squares
line through its positions over the last ``WINDOW_S`` seconds (the track stage's clock), so the
box's jitter from frame to frame averages out instead of being differentiated. A speed is given
once the track's positions in the window span ``MIN_SPAN_S`` seconds (and ``MIN_SAMPLES``
positions); before that, and for detections no confirmed track holds, it is NaN. Speeds are in
km/h, relative to the camera (a moving camera's own motion is not removed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations

import cv2
import numpy as np

from pipeline.config import ConfigError

WINDOW_S = 1.0     # seconds of a track's positions in one fit
MIN_SPAN_S = 0.5   # a speed needs positions this far apart in time
MIN_SAMPLES = 5    # ... and this many of them
CAPACITY = 64      # frames of positions kept (a whole 1 s window up to 64 fps; beyond, the window is shorter)
COLLINEAR = 1e-3   # three points whose triangle is smaller than this share of the points' extent squared are on a line
EXAMPLE = "0.35,0.62,0.65,0.62,0.9,0.95,0.1,0.95=0,30,3.5,30,3.5,5,0,5"


@dataclass(frozen=True)
class Calibration:
    """Four picture points (pixels, or fractions of the frame) and the ground points (metres) they show."""

    image: tuple[tuple[float, float], ...]
    ground: tuple[tuple[float, float], ...]

    @property
    def relative(self) -> bool:
        return all(0 <= v <= 1 for p in self.image for v in p)

    def pixels(self, width: int, height: int) -> np.ndarray:
        """(4, 2) the picture points in pixels of frames of this size."""
        return np.array(self.image, np.float64) * ([width, height] if self.relative else [1, 1])

    def homography(self, width: int, height: int) -> np.ndarray:
        """(3, 3) float64: frame pixels -> ground metres, for frames of this size."""
        img, gnd = self.pixels(width, height).astype(np.float32), np.array(self.ground, np.float32)
        return cv2.getPerspectiveTransform(img, gnd).astype(np.float64)

    def estimator(self, width: int, height: int) -> SpeedEstimator:
        """A SpeedEstimator for one source's frames of this size."""
        h = self.homography(width, height)
        return SpeedEstimator(h, side=ground_side(h, self.pixels(width, height)))

    def to_dict(self) -> dict:
        return {"image": [list(p) for p in self.image], "ground_m": [list(p) for p in self.ground]}


def _numbers(text: str) -> list[float] | None:
    try:
        return [float(v) for v in re.split(r"[,\s]+", text.strip()) if v]
    except ValueError:
        return None


def _orientations(pts: np.ndarray) -> np.ndarray:
    """The signed doubled area of each of the 4 triangles of 4 points, over the points' extent squared."""
    extent = max(float(np.ptp(pts, axis=0).max()), 1e-12)
    def cross(u, v):
        return u[0] * v[1] - u[1] * v[0]

    return np.array([cross(pts[b] - pts[a], pts[c] - pts[a]) for a, b, c in combinations(range(4), 3)]) / extent**2


def parse_calibration(text: str) -> Calibration:
    """``x1,y1,...,x4,y4=X1,Y1,...,X4,Y4`` -> Calibration; a one-line ConfigError says what to fix."""
    image, sep, ground = str(text).partition("=")
    a, b = _numbers(image), _numbers(ground)
    if not sep or a is None or b is None or len(a) != 8 or len(b) != 8:
        got = "no '='" if not sep else f"{0 if a is None else len(a)} and {0 if b is None else len(b)} numbers"
        raise ConfigError(f"--calibrate {text!r}: give 4 picture points = the 4 ground points they show, "
                          f"x1,y1,...,x4,y4=X1,Y1,...,X4,Y4 (8 numbers each side; got {got}), e.g. {EXAMPLE}")
    if not all(np.isfinite(a + b)):
        raise ConfigError(f"--calibrate {text!r}: every coordinate must be a finite number, e.g. {EXAMPLE}")
    if any(v < 0 for v in a):
        raise ConfigError(f"--calibrate {text!r}: picture points are pixels or fractions of the frame (0..1), none negative; "
                          "ground points (after '=') are metres and may be")
    img, gnd = np.array(a).reshape(4, 2), np.array(b).reshape(4, 2)
    oi, og = _orientations(img), _orientations(gnd)
    for side, o in (("picture", oi), ("ground", og)):
        if np.abs(o).min() < COLLINEAR:
            raise ConfigError(f"--calibrate {text!r}: three of the {side} points lie on one line: pick 4 points "
                              "spread over the ground, e.g. the corners of a lane segment")
    if not (np.all(np.sign(oi) == np.sign(og)) or np.all(np.sign(oi) == -np.sign(og))):
        raise ConfigError(f"--calibrate {text!r}: the picture and ground points are not in the same order: list the ground "
                          "points in the order of the picture points they match (and keep all 4 points on the ground, "
                          "below the horizon)")
    return Calibration(tuple(map(tuple, img.tolist())), tuple(map(tuple, gnd.tolist())))


def ground_points(xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) boxes -> (N, 2) float64 bottom centres: where an upright object stands on the ground."""
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]], axis=1)


def to_ground(homography: np.ndarray, points: np.ndarray, side: float = 0.0) -> np.ndarray:
    """(N, 2) frame pixels -> (N, 2) ground metres. ``side``: the sign of the homography's scale
    on the ground's side of the horizon (``Calibration.side``); points on the other side (above
    the horizon: no ground there) give NaN. 0: every point is mapped."""
    if len(points) == 0:
        return np.zeros((0, 2), np.float64)
    points = np.asarray(points, np.float64).reshape(-1, 2)
    out = cv2.perspectiveTransform(points.reshape(-1, 1, 2), homography).reshape(-1, 2)
    if side:
        w = points @ homography[2, :2] + homography[2, 2]
        out[w * side <= 0] = np.nan
    return out


def ground_side(homography: np.ndarray, image_points: np.ndarray) -> float:
    """The sign of the homography's scale at the calibration's picture points (their side of the horizon)."""
    c = np.asarray(image_points, np.float64).mean(0)
    return float(np.sign(c @ homography[2, :2] + homography[2, 2]))


def fit_speed(t: np.ndarray, xy: np.ndarray, valid: np.ndarray, min_span_s: float = MIN_SPAN_S,
              min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """Per row, the speed (units of ``xy`` per second) of a least-squares line through its valid samples.

    t: (N, K) times; xy: (N, K, 2) positions, finite (0 where not valid); valid: (N, K) bool. A row with fewer than
    ``min_samples`` valid samples, or whose valid times span less than ``min_span_s``, gives NaN."""
    n = valid.sum(1)
    tz = np.where(valid, t, 0.0)
    mt = tz.sum(1) / np.maximum(n, 1)
    dt = np.where(valid, t - mt[:, None], 0.0)
    var = np.einsum("nk,nk->n", dt, dt)
    cov = np.einsum("nk,nkc->nc", dt, xy)  # sum dt (p - mean p) == sum dt p, as sum dt == 0 (xy finite: 0 where not valid)
    v = cov / np.where(var > 0, var, 1.0)[:, None]
    span = np.where(valid, t, -np.inf).max(1) - np.where(valid, t, np.inf).min(1)
    ok = (n >= min_samples) & (span >= min_span_s) & (var > 0)
    return np.where(ok, np.hypot(v[:, 0], v[:, 1]), np.nan)


class SpeedEstimator:
    """The speed of one source's tracks: ``update`` once per frame, in time order.

    Positions live in arrays shared by every track, a row per track and a column per frame (a
    ring of ``capacity`` frames): a frame writes one column, so the frames in the window are the
    same columns for every track and a frame's fits are a few array operations over them,
    whatever the number of tracks. A track unseen for ``window_s`` is forgotten, its row reused.
    ``side``: see ``to_ground`` (boxes standing above the horizon get no position)."""

    def __init__(self, homography: np.ndarray, window_s: float = WINDOW_S, min_span_s: float = MIN_SPAN_S,
                 min_samples: int = MIN_SAMPLES, capacity: int = CAPACITY, side: float = 0.0):
        self.homography, self.side = np.asarray(homography, np.float64), side
        self.window_s, self.min_span_s, self.min_samples, self.capacity = window_s, min_span_s, min_samples, capacity
        self._rows: dict[int, int] = {}  # tracker id -> row
        self._free: list[int] = []
        self._t = np.full((0, capacity), -np.inf)  # the time of each row's position in each frame (-inf: none)
        self._xy = np.zeros((0, capacity, 2))      # positions, metres (0 where there is none)
        self._last = np.full(0, -np.inf)            # per row: the time it was last seen
        self._id = np.zeros(0, np.int64)            # per row: its track's id (0: free)
        self._frame_t = np.full(capacity, -np.inf)  # each column's frame time
        self._col = -1                              # the column of the latest frame

    def _grow(self, rows: int) -> None:
        k = len(self._t)
        self._t = np.concatenate([self._t, np.full((rows, self.capacity), -np.inf)])
        self._xy = np.concatenate([self._xy, np.zeros((rows, self.capacity, 2))])
        self._last = np.concatenate([self._last, np.full(rows, -np.inf)])
        self._id = np.concatenate([self._id, np.zeros(rows, np.int64)])
        self._free += range(k + rows - 1, k - 1, -1)

    def _forget(self, now: float) -> None:
        """Free the rows of tracks unseen for a whole window."""
        stale = np.flatnonzero((self._id > 0) & (self._last < now - self.window_s))
        for r in stale.tolist():
            del self._rows[int(self._id[r])]
            self._free.append(r)
        self._t[stale] = -np.inf
        self._last[stale], self._id[stale] = -np.inf, 0

    def update(self, tracker_id: np.ndarray, xyxy: np.ndarray, now: float) -> np.ndarray:
        """(N,) ids (<= 0: no confirmed track) and (N, 4) boxes of a frame at time ``now`` (s) ->
        (N,) float32 km/h, NaN where there is no speed yet."""
        ids = np.asarray(tracker_id, np.int64).reshape(-1)
        out = np.full(len(ids), np.nan, np.float32)
        self._col = c = (self._col + 1) % self.capacity
        self._frame_t[c] = now
        self._t[:, c] = -np.inf
        self._forget(now)
        keep = np.flatnonzero(ids > 0)
        if len(keep) == 0:
            return out
        tids = ids[keep].tolist()
        if len(set(tids)) != len(tids):  # a tracker gives an id once a frame; if not, the first box counts
            first: dict[int, int] = {}
            for k, tid in enumerate(tids):
                first.setdefault(tid, k)
            sel = sorted(first.values())
            keep, tids = keep[sel], [tids[k] for k in sel]
        ground = to_ground(self.homography, ground_points(np.asarray(xyxy)[keep]), self.side)
        new = [tid for tid in tids if tid not in self._rows]
        if len(new) > len(self._free):
            self._grow(max(len(new) - len(self._free), len(self._t), 16))
        for tid in new:
            self._rows[tid] = r = self._free.pop()
            self._id[r] = tid
        rows = np.array([self._rows[tid] for tid in tids], np.int64)
        placed = np.isfinite(ground).all(1)
        self._t[rows, c] = np.where(placed, now, -np.inf)
        self._xy[rows, c] = np.where(placed[:, None], ground, 0.0)
        self._last[rows] = now
        recent = int((self._frame_t >= now - self.window_s - 1e-9).sum())  # the window's frames: the columns up to c
        cols = (c - np.arange(recent)) % self.capacity
        rc = rows[:, None], cols[None, :]
        t = self._t[rc] - now  # relative: well conditioned whatever the clock reads
        out[keep] = fit_speed(t, self._xy[rc], t > -np.inf, self.min_span_s, self.min_samples) * 3.6
        return out

    def __len__(self) -> int:
        """Tracks remembered now."""
        return len(self._rows)
