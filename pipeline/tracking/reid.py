"""Appearance re-identification over any tracker: ids that survive crossings and short losses.

Motion trackers (ByteTrack, BoT-SORT without Re-ID) match boxes by where they are predicted to
be. When two look-alike objects of one class cross, their boxes overlap and the tracks can leave
on each other's objects (an id exchange); an object hidden longer than the motion model's
patience comes back under a new id. ``AppearanceTracker`` wraps a tracker and keeps, per
identity, what it looks like (an embedding of its crop, averaged over frames where nothing
overlaps it), then after each update:

1. **exchanges**: two identities of one class whose boxes touched within the last ``CONTACT_S``
   seconds and that stand clear of every other box now are compared with both appearances; when
   the crossed pairing fits better by ``SWAP_MARGIN`` (in summed cosine similarity) their ids are
   swapped back;
2. **returns**: a track the tracker has just started is given the id of a lost identity of its
   class (not in this frame, lost for at most the tracker's memory) when it looks like it
   (similarity >= ``RELINK_SIMILARITY``) and stands where that object could have gone
   (centre within ``REACH`` box diagonals, plus one diagonal per second lost); the best pairs by
   similarity first (Hungarian).

The wrapped tracker keeps its own ids; this layer maps them to the ids it returns (from 1, never
reused). Embeddings come from an ``Embedder`` chosen by spec (``EMBEDDERS``): ``hist`` is a
colour layout (no model). What it costs per frame and how much it helps: benchmarks/crossings.py,
README "Tracking".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipeline.types import Detections

CONTACT_S = 1.0           # a pair whose boxes touched this recently may have been exchanged
SWAP_MARGIN = 0.15        # summed cosine similarity the crossed pairing must win by
RELINK_SIMILARITY = 0.8   # least cosine similarity for a new track to take a lost identity's id
REACH = 1.5               # box diagonals a lost object may have moved, plus one per second lost
DRIFT = 0.85              # a clear crop less similar than this to its identity's appearance is another object
SETTLED = 3               # clear crops an appearance is made of before it is trusted to say so
EMA = 0.8                 # weight of the old appearance when a clear crop updates it


class ColourLayout:
    """``hist``: the colours of a box's upper and lower halves (inner part, away from the box
    edges where the background shows): per half, a 16-bin histogram of each of B, G and R, square
    rooted (Hellinger) and the whole normalised to unit length. 96 numbers; no model."""

    name = "hist"
    BINS = 16
    SIZE = (16, 32)  # crops are shrunk to this (w, h) first: the cost does not grow with the box

    def embed(self, image: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """(N, 96) float32 unit rows for the boxes ``xyxy`` (N, 4) of ``image`` (H, W, 3) uint8."""
        import cv2

        h, w = image.shape[:2]
        out = np.zeros((len(xyxy), 6 * self.BINS), np.float32)
        for i, (x1, y1, x2, y2) in enumerate(np.asarray(xyxy, np.float64)):
            bw, bh = x2 - x1, y2 - y1
            a, b = int(np.clip(x1 + 0.2 * bw, 0, w - 1)), int(np.clip(x2 - 0.2 * bw, 1, w))
            c, d = int(np.clip(y1 + 0.05 * bh, 0, h - 1)), int(np.clip(y2 - 0.05 * bh, 1, h))
            if b <= a or d <= c:
                continue
            crop = cv2.resize(image[c:d, a:b], self.SIZE, interpolation=cv2.INTER_AREA)
            q = (crop >> 4).astype(np.intp)  # 16 levels per channel
            half = self.SIZE[1] // 2
            parts = [np.bincount(q[rows, :, ch].ravel(), minlength=self.BINS)
                     for rows in (slice(0, half), slice(half, None)) for ch in range(3)]
            out[i] = np.sqrt(np.concatenate(parts))
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norm, out=np.zeros_like(out), where=norm > 0)


EMBEDDERS = {"hist": ColourLayout}


def make_embedder(spec: str):
    from pipeline.config import ConfigError

    if spec not in EMBEDDERS:
        raise ConfigError(f"--reid '{spec}': choose one of {', '.join(EMBEDDERS)}")
    return EMBEDDERS[spec]()


@dataclass
class Identity:
    """What this layer knows of one object: its class, appearance, last box and time."""

    class_id: int
    look: np.ndarray | None
    box: np.ndarray
    seen: float
    owner: int  # the wrapped tracker's id that holds it now (-1: none, it is lost)
    looks: int = 0  # clear crops its appearance was made of


def _overlaps(xyxy: np.ndarray) -> np.ndarray:
    """(N, N) bool: which boxes overlap which others (the diagonal is False)."""
    lt = np.maximum(xyxy[:, None, :2], xyxy[None, :, :2])
    rb = np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
    hit = np.clip(rb - lt, 0, None).prod(2) > 0
    np.fill_diagonal(hit, False)
    return hit


class AppearanceTracker:
    """``inner`` (a Tracker) with appearance re-identification by ``embedder`` (see the module)."""

    def __init__(self, inner, embedder):
        self.inner, self.embedder = inner, embedder
        self.name, self.memory_s = inner.name, inner.memory_s
        self._ids: dict[int, Identity] = {}   # our id -> identity
        self._of: dict[int, int] = {}         # the inner tracker's id -> our id
        self._contact: dict[tuple[int, int], float] = {}  # pair of our ids -> when their boxes last touched
        self._next = 1

    @property
    def settings(self) -> dict:
        """The inner tracker's settings (as they are now) and the embedder's spec."""
        return {**getattr(self.inner, "settings", {}), "reid": self.embedder.name}

    def _new(self, inner_id: int, class_id: int, box, now: float) -> int:
        oid, self._next = self._next, self._next + 1
        self._ids[oid] = Identity(class_id, None, box, now, inner_id)
        self._of[inner_id] = oid
        return oid

    def update(self, detections: Detections, pts: float, image: np.ndarray | None = None) -> Detections:
        out = self.inner.update(detections, pts, image)
        inner_ids = out.tracker_id
        rows = np.flatnonzero(inner_ids > 0)
        xyxy = out.xyxy[rows].astype(np.float64)
        looks = self.embedder.embed(image, xyxy) if image is not None and len(rows) else np.zeros((len(rows), 1), np.float32)
        clear = ~_overlaps(out.xyxy.astype(np.float64)).any(1)[rows]  # crops no other box covers part of
        ours: dict[int, int] = {}  # row -> our id
        fresh = []
        for k, r in enumerate(rows):
            oid = self._of.get(int(inner_ids[r]))
            if oid is None or oid not in self._ids or self._ids[oid].owner != int(inner_ids[r]):
                fresh.append(k)
            elif self._drifted(self._ids[oid], looks[k], clear[k]):  # the track moved onto another object
                self._ids[oid].owner = -1
                del self._of[int(inner_ids[r])]
                fresh.append(k)
            else:
                ours[k] = oid
        self._relink(fresh, ours, out.class_id[rows], xyxy, looks, clear, pts, inner_ids[rows])
        self._unswap(ours, looks, clear, pts)
        for k, oid in ours.items():
            ident = self._ids[oid]
            ident.box, ident.seen = xyxy[k], pts
            if clear[k] and looks[k].any():
                ident.look = looks[k] if ident.look is None else _unit(EMA * ident.look + (1 - EMA) * looks[k])
                ident.looks += 1
        for i, j in zip(*np.nonzero(np.triu(_overlaps(xyxy)))):
            if i in ours and j in ours:
                self._contact[tuple(sorted((ours[i], ours[j])))] = pts
        self._forget(pts)
        ids = np.full(len(out), -1, np.int64)
        for k, oid in ours.items():
            ids[rows[k]] = oid
        return replace(out, tracker_id=ids)

    @staticmethod
    def _drifted(ident: Identity, look: np.ndarray, clear: bool) -> bool:
        """Whether the track holding ``ident`` moved onto another object (one that stood in front
        of it, say): a clear crop of it no longer looks like it."""
        return clear and ident.looks >= SETTLED and look.any() and float(look @ ident.look) < DRIFT

    def _relink(self, fresh, ours, classes, xyxy, looks, clear, now, inner_ids) -> None:
        """New inner tracks, and tracks just taken off their identity, take a lost identity's id
        when they look like it and stand where it could be (the best pairs first)."""
        present = set(ours.values())
        lost = [oid for oid, ident in self._ids.items()
                if oid not in present and ident.look is not None and now - ident.seen <= self.memory_s]
        pairs = []
        if fresh and lost:
            from scipy.optimize import linear_sum_assignment

            sim = np.full((len(fresh), len(lost)), -1.0)
            for a, k in enumerate(fresh):
                if not clear[k] or not looks[k].any():
                    continue
                centre = (xyxy[k, :2] + xyxy[k, 2:]) / 2
                for b, oid in enumerate(lost):
                    ident = self._ids[oid]
                    diag = np.hypot(*(ident.box[2:] - ident.box[:2]))
                    gone = np.linalg.norm(centre - (ident.box[:2] + ident.box[2:]) / 2)
                    if ident.class_id == int(classes[k]) and gone <= diag * (REACH + (now - ident.seen)):
                        sim[a, b] = float(looks[k] @ ident.look)
            rows, cols = linear_sum_assignment(-sim)
            pairs = [(fresh[a], lost[b]) for a, b in zip(rows, cols) if sim[a, b] >= RELINK_SIMILARITY]
        taken = dict(pairs)
        for k in fresh:
            if k in taken:
                oid = taken[k]
                if self._of.get(self._ids[oid].owner) == oid:  # its former track, if still alive, starts afresh
                    del self._of[self._ids[oid].owner]
                self._ids[oid].owner = int(inner_ids[k])
                self._of[int(inner_ids[k])] = oid
                ours[k] = oid
            else:
                ours[k] = self._new(int(inner_ids[k]), int(classes[k]), xyxy[k], now)

    def _unswap(self, ours, looks, clear, now) -> None:
        """Identities that touched lately and stand clear now swap back when the crossed pairing fits better."""
        row_of = {oid: k for k, oid in ours.items()}
        for (a, b), when in list(self._contact.items()):
            if now - when > CONTACT_S or a not in row_of or b not in row_of:
                continue
            ka, kb = row_of[a], row_of[b]
            la, lb = self._ids[a].look, self._ids[b].look
            if not (clear[ka] and clear[kb]) or la is None or lb is None or self._ids[a].class_id != self._ids[b].class_id:
                continue
            straight = looks[ka] @ la + looks[kb] @ lb
            crossed = looks[ka] @ lb + looks[kb] @ la
            if crossed > straight + SWAP_MARGIN:
                ia, ib = self._ids[a].owner, self._ids[b].owner
                self._ids[a].owner, self._ids[b].owner = ib, ia
                self._of[ia], self._of[ib] = b, a
                ours[ka], ours[kb] = b, a
                row_of[a], row_of[b] = kb, ka
            del self._contact[(a, b)]  # judged once, when both first stand clear

    def _forget(self, now: float) -> None:
        for oid in [o for o, ident in self._ids.items() if now - ident.seen > self.memory_s]:
            ident = self._ids.pop(oid)
            if self._of.get(ident.owner) == oid:
                del self._of[ident.owner]
        self._contact = {p: t for p, t in self._contact.items() if now - t <= CONTACT_S and p[0] in self._ids and p[1] in self._ids}


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 0 else v
