"""The only things that cross stage borders: Frame, Fit / FitTransform, BoxMasks, Detections, EngineMeta."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded picture from a source.

    image: HxWx3 uint8 BGR. index: 0-based within its source. pts: presentation time in
    seconds. captured_at: ``time.monotonic()`` when grabbed, for end-to-end latency. path: the
    file it was read from, for sources of separate pictures (image folders); else None.
    """

    image: np.ndarray
    index: int
    pts: float
    captured_at: float
    source_id: int = 0
    path: str | None = None

    def __post_init__(self) -> None:
        img = self.image
        if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8):
            raise ValueError(f"Frame.image must be an HxWx3 uint8 array, got {getattr(img, 'shape', type(img))}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class Fit:
    """How frames enter a network: its input size and the fitting rule (see module docstring).

    mode: "letterbox" | "rect" | "resize" | "torchvision" | "stretch" | "shortside" | "centercrop". "rect" is a letterbox padded
    only up to a multiple of ``stride`` (Ultralytics' ``rect``, its predictor's default for
    checkpoints): ``input_hw`` is then the largest input, and a 16:9 frame into 640x640 becomes
    640x384. "torchvision" with a ``stride``: each frame resized as torchvision's transform
    does and padded to a multiple of the stride, as its batching does (without: placed in the
    fixed ``input_hw``). Both need an engine that takes any size (ONNX with dynamic height and
    width).
    "shortside" (torchvision's segmentation preset): the uint8 frame resized so its short side is
    ``min_size`` (the long side ``int(min_size * long / short)``, at most ``max_size``), placed
    top-left; with a stride, padded only to a multiple of it (stride 1: the resized frame itself).
    "centercrop" (torchvision's classification preset): the short side resized to ``min_size``,
    antialiased with ``interp`` (bilinear or bicubic), then the centre ``input_hw`` cut out.
    min_size/max_size: the resize bounds (modes "torchvision", "shortside", "centercrop"). pad_rgb:
    padding colour in [0, 1] RGB (torchvision modes).
    """

    input_hw: tuple[int, int]
    mode: Literal["letterbox", "rect", "resize", "torchvision", "stretch", "shortside", "centercrop"] = "letterbox"
    min_size: int = 0
    max_size: int = 0
    pad_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    stride: int = 0
    interp: Literal["bilinear", "bicubic"] = "bilinear"

    def __post_init__(self) -> None:
        if len(self.input_hw) != 2 or min(self.input_hw) < 1:
            raise ValueError(f"input_hw must be two sizes >= 1, got {self.input_hw}")
        if self.mode in ("torchvision", "shortside", "centercrop") and not 0 < self.min_size <= self.max_size:
            raise ValueError(f"a torchvision fit needs 0 < min_size <= max_size, got {self.min_size}, {self.max_size}")

    @property
    def per_frame(self) -> bool:
        """Each frame gets an input of its own shape (``rect``, ``torchvision`` with a stride):
        the engine must take any size, or one engine is built per shape."""
        return self.mode == "rect" or (self.mode in ("torchvision", "shortside") and self.stride > 0)

    def to_dict(self) -> dict:
        return {"input_hw": list(self.input_hw), "mode": self.mode, "min_size": self.min_size,
                "max_size": self.max_size, "pad_rgb": list(self.pad_rgb), "stride": self.stride, "interp": self.interp}


@dataclass(frozen=True)
class FitTransform:
    """How a frame was fitted into the network input, to map boxes back.

    input_x = frame_x * scale_x + pad_x (and the same in y); a letterbox keeps the aspect
    ratio (scale_x == scale_y), a stretch (SSD) does not.
    """

    frame_hw: tuple[int, int]
    input_hw: tuple[int, int]
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_frame(self, xyxy):
        """(N, 4) boxes in input pixels -> (N, 4) boxes in frame pixels, clipped to the frame
        (0 <= x <= W, 0 <= y <= H): the fit inverted. A numpy array gives float32; a torch
        tensor gives a tensor on its device (the GPU path), by the same arithmetic."""
        if isinstance(xyxy, np.ndarray):
            xyxy = xyxy.astype(np.float32, copy=False)
        h, w = self.frame_hw
        out = xyxy[:, [0, 1, 2, 3]]  # a copy, numpy or torch
        out[:, 0::2] = ((out[:, 0::2] - self.pad_x) / self.scale_x).clip(0, w)
        out[:, 1::2] = ((out[:, 1::2] - self.pad_y) / self.scale_y).clip(0, h)
        return out


@dataclass(frozen=True)
class BoxMasks:
    """Instance masks kept per box, so a frame's masks cost what their boxes cover, not N
    full frames.

    crops[i]: (y2 - y1, x2 - x1) bool, the mask inside region i. regions: (N, 4) int32
    x1, y1, x2, y2 in frame pixels, inside the frame; every mask pixel outside its region is
    False. frame_hw: the frame's (H, W).
    """

    crops: tuple[np.ndarray, ...]
    regions: np.ndarray
    frame_hw: tuple[int, int]

    def __post_init__(self) -> None:
        regions = np.asarray(self.regions, dtype=np.int32).reshape(-1, 4)
        object.__setattr__(self, "regions", regions)
        object.__setattr__(self, "crops", tuple(self.crops))
        h, w = self.frame_hw
        if len(self.crops) != len(regions):
            raise ValueError(f"BoxMasks has {len(self.crops)} crops for {len(regions)} regions")
        for c, (x1, y1, x2, y2) in zip(self.crops, regions):
            if not (0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h):
                raise ValueError(f"BoxMasks region {(x1, y1, x2, y2)} is outside the {w}x{h} frame")
            if c.dtype != np.bool_ or c.shape != (y2 - y1, x2 - x1):
                raise ValueError(f"BoxMasks crop {c.dtype} {c.shape} does not fit its region {(x1, y1, x2, y2)}")

    @classmethod
    def from_dense(cls, masks: np.ndarray) -> BoxMasks:
        """(N, H, W) bool -> BoxMasks cropped to each mask's own bounding region."""
        masks = np.asarray(masks)
        if masks.dtype != np.bool_ or masks.ndim != 3:
            raise ValueError(f"dense masks must be (N, H, W) bool, got {masks.dtype} {masks.shape}")
        crops, regions = [], []
        for m in masks:
            rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
            if len(rows) == 0:
                regions.append((0, 0, 0, 0))
                crops.append(np.zeros((0, 0), bool))
                continue
            x1, x2, y1, y2 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
            regions.append((x1, y1, x2, y2))
            crops.append(m[y1:y2, x1:x2].copy())
        return cls(tuple(crops), np.array(regions, np.int32).reshape(-1, 4), tuple(masks.shape[1:]))

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, idx) -> BoxMasks:
        sel = np.arange(len(self))[idx]
        return BoxMasks(tuple(self.crops[i] for i in np.atleast_1d(sel)), self.regions[np.atleast_1d(sel)], self.frame_hw)

    def dense(self, i: int | None = None) -> np.ndarray:
        """Full-frame masks: (N, H, W) bool, or (H, W) for one index. Allocates; for export only."""
        if i is not None:
            out = np.zeros(self.frame_hw, bool)
            x1, y1, x2, y2 = self.regions[i]
            out[y1:y2, x1:x2] = self.crops[i]
            return out
        return np.stack([self.dense(k) for k in range(len(self))]) if len(self) else np.zeros((0, *self.frame_hw), bool)

    def area(self) -> np.ndarray:
        return np.array([int(c.sum()) for c in self.crops], dtype=np.int64)


@dataclass(frozen=True)
class ClassMap:
    """A semantic segmentation of one frame: ``ids`` (H, W) uint8, the class id of every frame pixel."""

    ids: np.ndarray

    def __post_init__(self) -> None:
        ids = self.ids
        if not (isinstance(ids, np.ndarray) and ids.ndim == 2 and ids.dtype == np.uint8):
            raise ValueError(f"ClassMap.ids must be an (H, W) uint8 array, got {getattr(ids, 'dtype', type(ids))} {getattr(ids, 'shape', '')}")

    @property
    def frame_hw(self) -> tuple[int, int]:
        return int(self.ids.shape[0]), int(self.ids.shape[1])

    def areas(self) -> dict[int, int]:
        """Pixels per class present, by class id."""
        counts = np.bincount(self.ids.ravel(), minlength=1)
        return {int(c): int(counts[c]) for c in np.flatnonzero(counts)}


@dataclass(frozen=True)
class Labels:
    """Classifier labels: ``class_id`` (K,) int32 and ``confidence`` (K,) float32 (softmax
    probability), with the classifier's class ``names``. A frame's top-k (whole-frame
    classification), or one per detection (a classifier run on each detection's crop)."""

    class_id: np.ndarray
    confidence: np.ndarray
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_id", np.asarray(self.class_id, dtype=np.int32).reshape(-1))
        object.__setattr__(self, "confidence", np.asarray(self.confidence, dtype=np.float32).reshape(-1))
        if len(self.class_id) != len(self.confidence):
            raise ValueError(f"Labels has {len(self.class_id)} class ids for {len(self.confidence)} scores")

    def __len__(self) -> int:
        return len(self.class_id)

    def name(self, i: int) -> str:
        cid = int(self.class_id[i])
        return self.names[cid] if 0 <= cid < len(self.names) else str(cid)

    def __getitem__(self, idx) -> Labels:
        return Labels(self.class_id[idx], self.confidence[idx], self.names)


@dataclass
class Detections:
    """Struct-of-arrays detections for one frame, in frame pixels.

    xyxy: (N, 4) float32 with x1 <= x2, y1 <= y2. confidence: (N,) float32.
    class_id: (N,) int32. mask: BoxMasks, or None. A dense (N, H, W) bool array is accepted
    and stored as BoxMasks. tracker_id: (N,) int64 when a tracker has seen the frame (its
    track's id, from 1; -1 for a detection no confirmed track holds yet), else None.
    class_map: the frame's semantic segmentation (a frame-level layer: selecting detections
    keeps it whole), from semantic models; else None. labels: the frame's top-k classes, from
    classification models (frame-level too). crop_labels: one label per detection, from a
    classifier run on each detection's crop (``--classify-crops``), selected with them.
    speed_kmh: (N,) float32 ground speed of each detection's track in km/h, from the track stage
    with a ground calibration (``--calibrate``; ``pipeline.analytics.speed``): NaN where there is
    none yet (a new track, a detection no confirmed track holds); None without a calibration.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    mask: BoxMasks | None = None
    tracker_id: np.ndarray | None = None
    class_map: ClassMap | None = None
    labels: Labels | None = None
    crop_labels: Labels | None = None
    speed_kmh: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int32).reshape(-1)
        n = len(self.xyxy)
        if len(self.confidence) != n or len(self.class_id) != n:
            raise ValueError(
                f"Detections arrays disagree in length: xyxy {n}, confidence {len(self.confidence)}, "
                f"class_id {len(self.class_id)}"
            )
        if n and not (np.all(self.xyxy[:, 2] >= self.xyxy[:, 0]) and np.all(self.xyxy[:, 3] >= self.xyxy[:, 1])):
            raise ValueError("Detections.xyxy needs x1 <= x2 and y1 <= y2 for every box")
        if self.mask is not None:
            if not isinstance(self.mask, BoxMasks):
                m = np.asarray(self.mask)
                if m.dtype != np.bool_ or m.ndim != 3:
                    raise ValueError(f"Detections.mask must be BoxMasks or (N, H, W) bool, got {m.dtype} {m.shape}")
                self.mask = BoxMasks.from_dense(m)
            if len(self.mask) != n:
                raise ValueError(f"Detections.mask holds {len(self.mask)} masks for {n} boxes")
        if self.tracker_id is not None:
            self.tracker_id = np.asarray(self.tracker_id, dtype=np.int64).reshape(-1)
            if len(self.tracker_id) != n:
                raise ValueError(f"Detections.tracker_id holds {len(self.tracker_id)} ids for {n} boxes")
        if self.crop_labels is not None and len(self.crop_labels) != n:
            raise ValueError(f"Detections.crop_labels holds {len(self.crop_labels)} labels for {n} boxes")
        if self.speed_kmh is not None:
            self.speed_kmh = np.asarray(self.speed_kmh, dtype=np.float32).reshape(-1)
            if len(self.speed_kmh) != n:
                raise ValueError(f"Detections.speed_kmh holds {len(self.speed_kmh)} speeds for {n} boxes")
            if np.any(self.speed_kmh < 0) or np.any(np.isinf(self.speed_kmh)):
                raise ValueError("Detections.speed_kmh must be >= 0 and finite, or NaN where unknown")

    @classmethod
    def empty(cls, with_mask_hw: tuple[int, int] | None = None, class_map: ClassMap | None = None,
              labels: Labels | None = None) -> Detections:
        mask = None if with_mask_hw is None else BoxMasks((), np.zeros((0, 4), np.int32), with_mask_hw)
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), mask, class_map=class_map,
                   labels=labels)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, idx) -> Detections:
        """Select by boolean mask, index array or slice; an int gives a one-row Detections."""
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        return Detections(
            self.xyxy[idx],
            self.confidence[idx],
            self.class_id[idx],
            None if self.mask is None else self.mask[idx],
            None if self.tracker_id is None else self.tracker_id[idx],
            self.class_map,
            self.labels,
            None if self.crop_labels is None else self.crop_labels[idx],
            None if self.speed_kmh is None else self.speed_kmh[idx],
        )


class InputError(ValueError):
    """Bad input or settings: the message is one line saying what to change (``rtpipe`` exits 2).
    Each part of rtpipe raises its own subclass (ConfigError, ModelError, SourceError, ...)."""


class MetaError(InputError):
    """Engine metadata that does not validate; the message is one line naming the bad field."""


@dataclass(frozen=True)
class Baked:
    """Decoding limits compiled into a two-stage graph (torchvision R-CNN): looser settings cannot take effect."""

    conf: float
    iou: float
    max_det: int


@dataclass(frozen=True)
class AnchorLevel:
    """One feature level's anchors (torchvision one-stage). grid: (rows, cols). Grid anchors
    (RetinaNet, FCOS): ``stride`` (y, x) in input pixels and ``cells`` (A, 4) xyxy around the
    origin. Default boxes (SSD): ``steps`` (x, y) and ``wh`` (A, 2), fractions of the input."""

    grid: tuple[int, int]
    stride: tuple[int, int] | None = None
    cells: tuple[tuple[float, float, float, float], ...] | None = None
    steps: tuple[float, float] | None = None
    wh: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True)
class Anchors:
    """How a one-stage graph's outputs map to anchors: type "grid" or "default", one entry per level."""

    type: Literal["grid", "default"]
    levels: tuple[AnchorLevel, ...]


@dataclass(frozen=True)
class BoxCoding:
    """How a one-stage graph's scores and boxes are decoded. score: "sigmoid", "softmax" (with a
    background class) or "sigmoid_ctrness". coder: "deltas" (weights, clip) or "ltrb". topk:
    candidates kept per level (per class for softmax)."""

    score: Literal["sigmoid", "softmax", "sigmoid_ctrness"]
    coder: Literal["deltas", "ltrb"]
    topk: int
    weights: tuple[float, float, float, float] | None = None
    clip: float | None = None


@dataclass(frozen=True)
class EngineMeta:
    """What an engine is: everything needed to feed it frames and decode its outputs.

    Stored as JSON in an ONNX file's metadata (key ``rtpipe``) and in every sidecar's ``model``;
    read into this class once (``from_dict``), by the loading code only.

    family: "yolo" | "torchvision" | "semantic" | "classify". task: "detect" | "segment" | "semantic" | "classify".
    names: class names by id.
    fit: how frames enter the network. outputs: the graph's output names, in order.
    arch: the architecture (rtnet, a torchvision name), when known. layout (yolo): how
    ``output0`` is laid out (``pipeline.models.yolo``; None: dense). stride (yolo): the largest
    stride. kind (torchvision): rcnn, retinanet, fcos or ssd. batch: the graph's fixed batch
    size (None: dynamic); batch_max: the most a built engine takes. baked: decoding limits inside
    the graph. mean/std: normalisation inside the graph (torchvision). anchors/decode
    (torchvision one-stage): anchor levels and box coding.
    """

    family: Literal["yolo", "torchvision", "semantic", "classify"]
    task: str
    names: tuple[str, ...]
    fit: Fit
    outputs: tuple[str, ...]
    arch: str | None = None
    layout: str | None = None
    stride: int | None = None
    kind: str | None = None
    batch: int | None = None
    batch_max: int | None = None
    baked: Baked | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    anchors: Anchors | None = None
    decode: BoxCoding | None = None

    @classmethod
    def from_dict(cls, data: object, origin: str = "engine metadata") -> EngineMeta:
        """A JSON-style dict -> EngineMeta, validated; MetaError names the field that is wrong.
        Unknown keys are ignored (metadata written by a newer rtpipe)."""
        from pydantic import ValidationError

        try:
            return _meta_adapter().validate_python(data)
        except ValidationError as exc:
            e = exc.errors()[0]
            key = ".".join(str(p) for p in e["loc"]) or "(top level)"
            given = e.get("input")
            shown = "" if isinstance(given, (dict, list)) or e["type"] == "missing" else f" (got {given!r:.60})"
            raise MetaError(f"{origin}: field '{key}': {e['msg']}{shown}; rebuild or re-export the model") from None

    def to_dict(self) -> dict:
        """JSON-able, the form ``from_dict`` reads."""
        d = asdict(self)
        d["names"], d["outputs"], d["fit"] = list(self.names), list(self.outputs), self.fit.to_dict()
        return d


@functools.cache
def _meta_adapter():
    """Built once, on first use: pydantic is imported only by what reads metadata."""
    from pydantic import TypeAdapter

    return TypeAdapter(EngineMeta)
