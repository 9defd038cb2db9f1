"""Model loading: a spec -> engine + backend + family decoder, behind one ``Model``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.backends import Backend
from pipeline.models.yolo import DecodeSettings, YoloDecoder, parse_names
from pipeline.preprocess import prepare
from pipeline.types import Detections, LetterboxMeta

ASSETS = Path(__file__).parent / "assets"
BUILTIN = {"tiny-seg": ASSETS / "tiny-yoloseg.onnx"}
BACKENDS = ("auto", "onnxruntime")


class ModelError(ValueError):
    """A model spec that cannot be loaded; the message says what to change."""


@dataclass(frozen=True)
class ModelInfo:
    family: str
    task: str
    names: tuple[str, ...]
    input_hw: tuple[int, int]
    path: str
    backend: str

    def to_dict(self) -> dict:
        return {
            "family": self.family, "task": self.task, "names": list(self.names),
            "input_hw": list(self.input_hw), "path": self.path, "backend": self.backend,
        }


class Model:
    """Preprocess, run and decode: ``predict(images) -> list[Detections]``.

    The runtime calls the three steps separately, one stage each; ``predict`` chains them for
    scripts and tests.
    """

    def __init__(self, backend: Backend, decoder, info: ModelInfo):
        self.backend = backend
        self.decoder = decoder
        self.metadata = info

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxMeta]:
        return prepare(image, self.metadata.input_hw)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.backend.infer(batch)

    def decode(self, outputs: dict[str, np.ndarray], metas: list[LetterboxMeta]) -> list[Detections]:
        return self.decoder(outputs, metas)

    def predict(self, images: list[np.ndarray]) -> list[Detections]:
        if not images:
            return []
        tensors, metas = zip(*(self.preprocess(im) for im in images))
        return self.decode(self.infer(np.stack(tensors)), list(metas))


def resolve_spec(spec: str) -> Path:
    """A builtin name or a file path -> an existing engine file (clear error otherwise)."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelError(f"model '{spec}' not found: give an ONNX file path or a builtin ({', '.join(BUILTIN)})")
    if path.suffix.lower() != ".onnx":
        raise ModelError(
            f"model '{spec}': only ONNX files (.onnx) and builtins ({', '.join(BUILTIN)}) load in this version; "
            "export the checkpoint to ONNX first"
        )
    return path


def load_model(
    spec: str,
    backend: str = "auto",
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    classes: list[int] | None = None,
    imgsz: int | None = None,
) -> Model:
    """Load a model for ``predict`` or the pipeline. ``imgsz`` is checked against the engine."""
    if backend not in BACKENDS:
        raise ModelError(f"backend '{backend}' is not available: choose one of {', '.join(BACKENDS)}")
    path = resolve_spec(spec)
    from pipeline.backends.onnxruntime import OnnxRuntimeBackend

    try:
        be = OnnxRuntimeBackend(path)
    except ValueError as exc:
        raise ModelError(str(exc)) from exc
    meta = be.metadata()
    if imgsz is not None and tuple(be.input_hw) != (imgsz, imgsz):
        raise ModelError(
            f"model '{spec}' has a fixed input of {be.input_hw[1]}x{be.input_hw[0]}; drop --imgsz {imgsz} "
            f"or export the model at {imgsz}"
        )
    if "names" not in meta:
        raise ModelError(f"model '{spec}' carries no 'names' metadata: export it with Ultralytics or rtpipe")
    names = tuple(parse_names(meta["names"]))
    task = meta.get("task", "detect")
    info = ModelInfo("yolo", task, names, be.input_hw, str(path), be.name)
    settings = DecodeSettings(conf=conf, iou=iou, max_det=max_det, classes=None if classes is None else tuple(classes))
    return Model(be, YoloDecoder(len(names), settings), info)
