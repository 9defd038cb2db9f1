"""The only things that cross stage borders: Frame, LetterboxMeta, Detections."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded picture from a source.

    image: HxWx3 uint8 BGR. index: 0-based within its source. pts: presentation time in
    seconds. captured_at: ``time.monotonic()`` when grabbed, for end-to-end latency.
    """

    image: np.ndarray
    index: int
    pts: float
    captured_at: float
    source_id: int = 0

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
class LetterboxMeta:
    """How a frame was fitted into the network input, to map boxes back.

    input = frame * scale + (pad_x, pad_y); frame = (input - pad) / scale.
    """

    frame_hw: tuple[int, int]
    input_hw: tuple[int, int]
    scale: float
    pad_x: float
    pad_y: float

    def to_frame(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in input pixels -> (N, 4) float32 boxes in frame pixels, clipped."""
        out = np.empty_like(xyxy, dtype=np.float32)
        out[:, 0::2] = (xyxy[:, 0::2] - self.pad_x) / self.scale
        out[:, 1::2] = (xyxy[:, 1::2] - self.pad_y) / self.scale
        h, w = self.frame_hw
        np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
        return out


@dataclass
class Detections:
    """Struct-of-arrays detections for one frame, in frame pixels.

    xyxy: (N, 4) float32 with x1 <= x2, y1 <= y2. confidence: (N,) float32.
    class_id: (N,) int32. mask: (N, H, W) bool in frame pixels, or None.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    mask: np.ndarray | None = None

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
            m = np.asarray(self.mask)
            if m.dtype != np.bool_ or m.ndim != 3 or m.shape[0] != n:
                raise ValueError(f"Detections.mask must be (N, H, W) bool with N={n}, got {m.dtype} {m.shape}")
            self.mask = m

    @classmethod
    def empty(cls, with_mask_hw: tuple[int, int] | None = None) -> Detections:
        mask = None if with_mask_hw is None else np.zeros((0, *with_mask_hw), dtype=bool)
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), mask)

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
        )
