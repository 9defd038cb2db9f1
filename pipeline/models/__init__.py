"""Model loading: a spec -> graph + backend + family decoder, behind one ``Model``.

A spec names where the network comes from; the family module says how to build, export and
decode it; the backend (chosen by name) runs it:

======================== ========================================== =========================
spec                     what it is                                 graph
======================== ========================================== =========================
``demo``                 builtin: trained on generated driving       bundled ONNX; its
                         scenes (``pipeline.demo``)                  checkpoint for torch/aoti
``tiny-seg``             builtin stand-in (random weights)          bundled ONNX
``x.onnx``               Ultralytics or rtpipe ONNX export          the file
``torchvision:<arch>``   torchvision detection, semantic            built in torch
                         segmentation or classification model
                         + ``weights``
``x.pt`` / ``x.pth``     rtpipe (rtnet) or Ultralytics checkpoint    built in torch
``x.pt2`` / ``x.engine`` engine made by ``rtpipe build`` + sidecar   the engine
``configs/x.yaml``       a preset: its ``model``/``weights``/``imgsz``  as the preset's model
======================== ========================================== =========================
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.backends import Backend
from pipeline.models import classify as classify_family
from pipeline.models import semantic as semantic_family
from pipeline.models import torchvision as tv_family
from pipeline.models import yolo as yolo_family
from pipeline.models.decoder import Decoder, DecodeSettings
from pipeline.models.export import META_KEY
from pipeline.models.network import Network
from pipeline.preprocess.host import prepare
from pipeline.types import Detections, EngineMeta, Fit, FitTransform, InputError, MetaError

ASSETS = Path(__file__).parent / "assets"
BUILTIN = {"demo": ASSETS / "demo-seg.onnx", "tiny-seg": ASSETS / "tiny-yoloseg.onnx", "demo-road": ASSETS / "demo-road.onnx"}
# builtins trained here ship their checkpoint too; the ONNX is its export (rtpipe build, see assets/demo-seg.json)
BUILTIN_CHECKPOINTS = {"demo": ASSETS / "demo-seg.pt"}
ENGINE_SUFFIXES = {".pt2": "aoti", ".engine": "tensorrt", ".plan": "tensorrt"}
FAMILIES = {"yolo": yolo_family, "torchvision": tv_family, "semantic": semantic_family, "classify": classify_family}


class ModelError(InputError):
    """A model spec that cannot be loaded; the message says what to change."""


@dataclass(frozen=True)
class ModelInfo:
    family: str
    task: str
    names: tuple[str, ...]
    input_hw: tuple[int, int]
    path: str
    backend: str
    fit: Fit  # how frames enter the network
    arch: str | None = None

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "arch": self.arch,
            "task": self.task,
            "names": list(self.names),
            "input_hw": list(self.input_hw),
            "path": self.path,
            "backend": self.backend,
        }


class Model:
    """Preprocess, infer and postprocess: ``predict(images) -> list[Detections]``.

    The runtime calls the three steps separately, one stage each; ``predict`` chains them for
    scripts and tests. Images are HxWx3 uint8 BGR; detections come back in their pixels.
    """

    def __init__(self, backend: Backend, decoder: Decoder, info: ModelInfo):
        self.backend = backend
        self.decoder = decoder
        self.info = info

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, FitTransform]:
        return prepare(image, self.info.fit)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.backend.infer(batch)

    def postprocess(self, outputs: dict[str, np.ndarray], transforms: list[FitTransform]) -> list[Detections]:
        return self.decoder(outputs, transforms)

    def predict(self, images) -> list[Detections]:
        """Detections for each image: one image (HxWx3 BGR, HxW grey or HxWx4 BGRA, uint8),
        an image file's path, or a list of either; always a list, one entry per image."""
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        if not items:
            return []
        tensors, transforms = zip(*(self.preprocess(as_bgr(im)) for im in items))
        out: list[Detections] = [None] * len(items)  # type: ignore[list-item]
        for shape in dict.fromkeys(t.shape for t in tensors):  # fitted inputs: one engine call per input shape
            idx = [i for i, t in enumerate(tensors) if t.shape == shape]
            for i, d in zip(idx, self.postprocess(self.infer(np.stack([tensors[i] for i in idx])), [transforms[i] for i in idx])):
                out[i] = d
        return out


def as_bgr(image) -> np.ndarray:
    """An image for ``Model.predict``: a path is read, grey and BGRA become BGR; anything else
    is an InputError saying what is accepted."""
    import cv2

    from pipeline.sources import read_image

    if isinstance(image, (str, Path)):
        path = Path(image)
        try:
            read = read_image(path) if path.is_file() else None
        except cv2.error:  # over OpenCV's image size limit (see pipeline.sources.MAX_FRAME_PIXELS)
            read = None
        if read is None:
            raise InputError(f"cannot read an image from '{path}': give an image file (for videos, folders and streams: "
                             "open_source or Session)")
        return read
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) \
            or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)) or min(image.shape[:2]) < 1:
        shown = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}".strip()
        raise InputError(f"predict takes HxWx3 uint8 BGR images (or HxW grey, HxWx4 BGRA, or paths), got {shown}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


# ---------------------------------------------------------------------------- specs


def _onnx_graph(path: Path, label: str) -> Network:
    from pipeline.backends.onnxruntime import OnnxRuntimeBackend

    try:
        backend = OnnxRuntimeBackend(path)  # checks the input; reused as the CPU backend
    except ValueError as exc:
        raise ModelError(f"model '{label}': {exc}") from exc
    props = backend.metadata()
    outputs = {o.name: o.shape for o in backend.session.get_outputs()}
    if META_KEY not in props and "names" not in props:
        raise ModelError(
            f"model '{label}': unknown ONNX layout (no Ultralytics 'names' or rtpipe metadata): "
            "expected an Ultralytics export (output0 [B, 4+nc(+32), N], output1 prototypes) or one made by rtpipe"
        )
    try:
        if META_KEY in props:
            meta = EngineMeta.from_dict(json.loads(props[META_KEY]), f"model '{label}': rtpipe metadata")
        else:
            meta = yolo_family.meta_from_ultralytics(props, backend.input_hw, outputs)  # (input_hw None: dynamic)
    except MetaError as exc:
        raise ModelError(str(exc)) from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"model '{label}': its rtpipe metadata (ONNX metadata key '{META_KEY}') is not valid JSON ({exc}); "
                         "rebuild or re-export the model") from exc
    except ValueError as exc:  # unparseable Ultralytics names
        raise ModelError(f"model '{label}': {exc}") from exc
    if backend.input_hw is not None and meta.fit.input_hw != tuple(backend.input_hw):
        raise ModelError(f"model '{label}': its metadata says the input is {meta.fit.input_hw}, the graph takes "
                         f"{tuple(backend.input_hw)}: rebuild or re-export the model")
    problem = FAMILIES[meta.family].check_outputs(meta, outputs)
    if problem:
        raise ModelError(f"model '{label}': unknown output layout: {problem}")
    return Network(meta, label, onnx=path, cpu_backend=backend, source=path)


def _torchvision_graph(arch: str, weights, imgsz: int | None, settings: DecodeSettings, label: str) -> Network:
    if arch not in semantic_family.ARCHS and arch not in classify_family.ARCHS:
        tv_family.check_arch(arch)
    if weights is None:
        warnings.warn(f"{label}: random weights (seed 0): its results are meaningless", stacklevel=4)
    source = Path(weights).expanduser() if weights is not None and weights != "DEFAULT" else None
    if arch in classify_family.ARCHS:
        model = classify_family.build(arch, weights)
        meta = classify_family.describe(arch, classify_family.classes_in(model.state_dict(), arch), classify_family.saved_names(weights),
                                        imgsz=imgsz)
        return Network(meta, label, module=classify_family.graph(model, meta), source=source)
    if arch in semantic_family.ARCHS:
        meta = semantic_family.describe(arch, imgsz)
        model = semantic_family.build(arch, weights)
        return Network(meta, label, module=semantic_family.graph(model, meta), source=source)
    model = tv_family.build(arch, weights, imgsz, settings)
    meta = tv_family.describe(model, arch)
    return Network(meta, label, module=tv_family.graph(model, meta), source=source)


def _require_torch(label: str, modules: tuple[str, ...] = ("torch", "torchvision", "onnx")) -> None:
    """Checkpoints need torch (and torchvision, onnx for export); built .pt2/.engine files torch: say how to install them."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelError(f"model '{label}' needs {', '.join(missing)}: pip install 'rtpipe[torch]'")


def checkpoint_of(spec: str) -> str:
    """A builtin's checkpoint, for the runtimes and builds that need the PyTorch module; other specs as given."""
    return str(BUILTIN_CHECKPOINTS[spec]) if spec in BUILTIN_CHECKPOINTS else spec


def resolve(spec: str, weights=None, imgsz: int | None = None, settings: DecodeSettings | None = None,
            trust_checkpoint: bool = False) -> Network:
    """A model spec -> its Network (see the module docstring for what a spec may be)."""
    settings = settings or DecodeSettings()
    if spec in BUILTIN:
        return _onnx_graph(BUILTIN[spec], spec)
    if spec.startswith("torchvision:"):
        arch = spec.split(":", 1)[1]
        _require_torch(spec)
        try:
            return _torchvision_graph(arch, weights, imgsz, settings, spec)
        except (ValueError, FileNotFoundError) as exc:
            raise ModelError(str(exc)) from exc
    path = Path(spec).expanduser()
    suffix = path.suffix.lower()
    if not path.exists():
        raise ModelError(
            f"model '{spec}' not found: give an ONNX file, a .pt checkpoint, torchvision:<arch>, a preset, or a builtin ({', '.join(BUILTIN)})"
        )
    if suffix in (".yaml", ".yml"):
        return _preset_graph(path, weights, imgsz, settings, trust_checkpoint)
    if suffix == ".onnx":
        return _onnx_graph(path, spec)
    if suffix in (".pt", ".pth"):
        _require_torch(spec)
        try:
            return yolo_family.checkpoint_graph(path, imgsz, trust_checkpoint)
        except ValueError as exc:
            raise ModelError(str(exc)) from exc
    if suffix in ENGINE_SUFFIXES:
        from pipeline.sidecar import SidecarError, load_checked

        _require_torch(spec, ("torch",))  # both runtimes take torch tensors
        try:
            meta = EngineMeta.from_dict(load_checked(path)["model"], f"model '{spec}': sidecar {path.with_suffix('.json').name}")
        except (SidecarError, MetaError) as exc:
            raise ModelError(str(exc)) from exc
        return Network(meta, spec, engine=path, source=path)
    raise ModelError(f"model '{spec}': unknown file type '{suffix}': expected .onnx, .pt/.pth, .pt2, .engine, .yaml or torchvision:<arch>")


def _preset_graph(path: Path, weights, imgsz, settings, trust) -> Network:
    from pipeline.config import ConfigError, read_preset

    try:
        preset = read_preset(path)
    except ConfigError as exc:
        raise ModelError(str(exc)) from exc
    spec = preset.get("model")
    if not spec or str(spec).endswith((".yaml", ".yml")):
        raise ModelError(f"preset '{path}' names no model (key 'model')")
    return resolve(str(spec), weights or preset.get("weights"), imgsz or preset.get("imgsz"), settings, trust)
