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
``torchvision:<arch>``   torchvision detection model + ``weights``  built in torch
``x.pt`` / ``x.pth``     rtpipe (rtnet) or Ultralytics checkpoint    built in torch
``x.pt2`` / ``x.engine`` engine made by ``rtpipe build`` + sidecar   the engine
``configs/x.yaml``       a preset: its ``model``/``weights``/``imgsz``  as the preset's model
======================== ========================================== =========================
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.backends import Backend
from pipeline.models import torchvision as tv_family
from pipeline.models import yolo as yolo_family
from pipeline.models.decoder import DecodeSettings, Decoder
from pipeline.models.export import META_KEY
from pipeline.preprocess.host import prepare
from pipeline.types import Baked, Detections, EngineMeta, Fit, FitTransform, MetaError

ASSETS = Path(__file__).parent / "assets"
BUILTIN = {"demo": ASSETS / "demo-seg.onnx", "tiny-seg": ASSETS / "tiny-yoloseg.onnx"}
# builtins trained here ship their checkpoint too; the ONNX is its export (rtpipe build, see assets/demo-seg.json)
BUILTIN_CHECKPOINTS = {"demo": ASSETS / "demo-seg.pt"}
BACKENDS = ("auto", "onnxruntime", "torch", "aoti", "tensorrt")
ENGINE_SUFFIXES = {".pt2": "aoti", ".engine": "tensorrt", ".plan": "tensorrt"}
FAMILIES = {"yolo": yolo_family, "torchvision": tv_family}


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

    def predict(self, images: list[np.ndarray]) -> list[Detections]:
        if not images:
            return []
        tensors, metas = zip(*(self.preprocess(im) for im in images))
        return self.postprocess(self.infer(np.stack(tensors)), list(metas))


@dataclass
class Graph:
    """A network ready for a backend: an ONNX graph, a torch module, or (checkpoints) both ways."""

    meta: EngineMeta
    label: str  # what to call it in messages and metadata
    onnx: Path | bytes | None = None
    module: object | None = None  # torch.nn.Module
    cpu_backend: Backend | None = None  # the ONNX Runtime session opened to read the metadata
    source: Path | None = None  # the file whose sha256 identifies the weights (checkpoint, ONNX, state_dict)
    engine: Path | None = None  # a built .pt2 / .engine (its sidecar checked; see pipeline.build.sidecar)

    def to_onnx(self) -> Path | bytes:
        if self.onnx is None:
            from pipeline.models.export import to_onnx

            self.onnx = to_onnx(self.module, self.meta, batch=self.meta.batch)
        return self.onnx


# ---------------------------------------------------------------------------- specs


def _onnx_graph(path: Path, label: str) -> Graph:
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
            meta = yolo_family.meta_from_ultralytics(props, backend.input_hw, outputs)
    except MetaError as exc:
        raise ModelError(str(exc)) from exc
    except ValueError as exc:  # bad JSON, unparseable names
        raise ModelError(f"model '{label}': {exc}") from exc
    problem = FAMILIES[meta.family].check_outputs(meta, outputs)
    if problem:
        raise ModelError(f"model '{label}': unknown output layout: {problem}")
    return Graph(meta, label, onnx=path, cpu_backend=backend, source=path)


def _torchvision_graph(arch: str, weights, imgsz: int | None, settings: DecodeSettings, label: str) -> Graph:
    tv_family.check_arch(arch)
    if weights is None:
        warnings.warn(f"{label}: no weights given, using random weights (seed 0): detections are meaningless", stacklevel=4)
    model = tv_family.build(arch, weights, imgsz, settings)
    meta = tv_family.describe(model, arch)
    source = Path(weights).expanduser() if weights is not None and weights != "DEFAULT" else None
    return Graph(meta, label, module=tv_family.graph(model, meta), source=source)


def _require_torch(label: str) -> None:
    """Checkpoints need torch (and torchvision, onnx for export): say how to install them."""
    import importlib.util

    missing = [m for m in ("torch", "torchvision", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelError(f"model '{label}' needs {', '.join(missing)}: pip install 'rtpipe[torch]'")


def checkpoint_of(spec: str) -> str:
    """A builtin's checkpoint, for the runtimes and builds that need the PyTorch module; other specs as given."""
    return str(BUILTIN_CHECKPOINTS[spec]) if spec in BUILTIN_CHECKPOINTS else spec


def resolve(spec: str, weights=None, imgsz: int | None = None, settings: DecodeSettings | None = None, trust_checkpoint: bool = False) -> Graph:
    """A model spec -> its Graph (see the module docstring for what a spec may be)."""
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
        from pipeline.build.sidecar import SidecarError, load_checked

        try:
            meta = EngineMeta.from_dict(load_checked(path)["model"], f"model '{spec}': sidecar {path.with_suffix('.json').name}")
        except (SidecarError, MetaError) as exc:
            raise ModelError(str(exc)) from exc
        return Graph(meta, spec, engine=path, source=path)
    raise ModelError(f"model '{spec}': unknown file type '{suffix}': expected .onnx, .pt/.pth, .pt2, .engine, .yaml or torchvision:<arch>")


def _preset_graph(path: Path, weights, imgsz, settings, trust) -> Graph:
    from pipeline.config import ConfigError, read_preset

    try:
        preset = read_preset(path)
    except ConfigError as exc:
        raise ModelError(str(exc)) from exc
    spec = preset.get("model")
    if not spec or str(spec).endswith((".yaml", ".yml")):
        raise ModelError(f"preset '{path}' names no model (key 'model')")
    return resolve(str(spec), weights or preset.get("weights"), imgsz or preset.get("imgsz"), settings, trust)


# ---------------------------------------------------------------------------- backends


def _onnxruntime(graph: Graph, device: str) -> Backend:
    from pipeline.backends.onnxruntime import OnnxRuntimeBackend, providers_for

    if device == "cpu" and graph.cpu_backend is not None:
        return graph.cpu_backend
    if graph.onnx is None and graph.module is None:
        raise ValueError(f"'{graph.label}' is a built engine: run it with --backend auto")
    return OnnxRuntimeBackend(graph.to_onnx(), providers_for(device))


def _torch(graph: Graph, device: str) -> Backend:
    from pipeline.backends.torch import TorchBackend

    if graph.module is None:
        raise ValueError(f"the torch backend runs checkpoints; '{graph.label}' is not one: use --backend auto")
    return TorchBackend(graph.module, graph.meta.fit.input_hw, graph.meta.outputs, graph.meta.batch, device)


def _engine_backend(fmt: str) -> Callable[[Graph, str], Backend]:
    """aoti / tensorrt: a built engine runs as it is; a checkpoint is built first (engine cache)."""

    def make(graph: Graph, device: str) -> Backend:
        from pipeline.build.cache import cached_engine

        if graph.engine is None:
            if graph.module is None:
                raise ValueError(f"the {fmt} backend needs a checkpoint or a .{'pt2' if fmt == 'aoti' else 'engine'} built by rtpipe build")
            graph.engine = cached_engine(graph, fmt, device)
        kind = ENGINE_SUFFIXES[graph.engine.suffix.lower()]
        if kind != fmt:
            raise ValueError(f"'{graph.engine}' is a {kind} engine: use --backend {kind}")
        from pipeline.build.sidecar import check_device

        check_device(graph.engine, device)
        if fmt == "aoti":
            from pipeline.backends.aoti import AotiBackend

            return AotiBackend(graph.engine, graph.meta, device)
        from pipeline.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(graph.engine, graph.meta, device)

    return make


BACKEND_FACTORIES: dict[str, Callable[[Graph, str], Backend]] = {
    "onnxruntime": _onnxruntime, "torch": _torch, "aoti": _engine_backend("aoti"), "tensorrt": _engine_backend("tensorrt")}


def pick_backend(graph: Graph, device: str) -> str:
    """``auto``: the fastest runtime available for the graph on the device.

    A built engine runs on its own runtime. ONNX graphs run on ONNX Runtime. Checkpoints on the
    CPU too, after an in-memory export (0.7-2.4 s at load; inference 1.3-3.6x faster than torch
    eager here, see benchmarks/backend_choice.py); on CUDA, torch, which needs no extra package.
    """
    if graph.engine is not None:
        return ENGINE_SUFFIXES[graph.engine.suffix.lower()]
    if graph.module is None or device == "cpu":
        return "onnxruntime"
    return "torch"


def load_model(
    spec: str,
    backend: str = "auto",
    device: str = "cpu",
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    classes: list[int] | None = None,
    imgsz: int | None = None,
    weights: str | Path | None = None,
    trust_checkpoint: bool = False,
    agnostic: bool = False,
    nms: bool = False,
) -> Model:
    """Load a model for ``predict`` or the pipeline.

    weights: for ``torchvision:<arch>``, a local state_dict file or ``"DEFAULT"`` (torchvision's
    weights API; downloads); None gives random weights with a warning. imgsz: checked against a
    fixed-size ONNX; sets the input size of models built here. trust_checkpoint: allow
    unpickling a .pt checkpoint's Python objects (only for files you trust). nms: also run NMS on
    NMS-free outputs (YOLO26 end-to-end, RT-DETR); dense outputs always get it.
    """
    if backend not in BACKENDS:
        raise ModelError(f"backend '{backend}' is not available: choose one of {', '.join(BACKENDS)}")
    settings = DecodeSettings(conf=conf, iou=iou, max_det=max_det, classes=None if classes is None else tuple(classes), agnostic=agnostic,
                              nms=nms)
    if backend in ("torch", "aoti", "tensorrt") or (backend == "auto" and device != "cpu") or imgsz is not None:
        spec = checkpoint_of(spec)  # a builtin's bundled ONNX has one input size; its checkpoint exports at any
    graph = resolve(spec, weights, imgsz, settings, trust_checkpoint)
    meta = graph.meta
    fit = meta.fit
    if imgsz is not None and graph.module is None and fit.input_hw != (imgsz, imgsz) and fit.mode == "letterbox":
        raise ModelError(
            f"model '{spec}' has a fixed input of {fit.input_hw[1]}x{fit.input_hw[0]}; drop --imgsz {imgsz} or export the model at {imgsz}"
        )
    name = pick_backend(graph, device) if backend == "auto" else backend
    try:
        be = BACKEND_FACTORIES[name](graph, device)
    except ValueError as exc:  # includes SidecarError and BuildError
        raise ModelError(f"model '{spec}': {exc}") from exc
    if meta.baked is not None:
        _warn_baked(spec, meta.baked, settings)
    info = ModelInfo(meta.family, meta.task, meta.names, fit.input_hw, graph.label, be.name, fit, meta.arch)
    return Model(be, FAMILIES[meta.family].decoder(meta, settings), info)


def _warn_baked(spec: str, baked: Baked, s: DecodeSettings) -> None:
    """Two-stage graphs run their own NMS: settings looser than the graph's cannot take effect."""
    if s.iou != baked.iou or s.conf < baked.conf or s.max_det > baked.max_det:
        warnings.warn(
            f"{spec}: this graph was built with conf {baked.conf}, iou {baked.iou}, max_det {baked.max_det}; "
            "its NMS IoU and lower limits apply (rebuild it to change them)",
            stacklevel=3,
        )
