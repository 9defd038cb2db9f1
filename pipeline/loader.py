"""Loading a model: a spec -> its Network (``pipeline.models.resolve``) -> a backend -> ``Model``.

The backend registry lives here, above both the families (``pipeline.models``) and the builder
(``pipeline.build``): the aoti and tensorrt backends build a checkpoint's engine on first use
(the engine cache), so loading depends on building, never the other way round.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from pipeline.backends import BACKENDS, Backend
from pipeline.config import input_hw
from pipeline.models import ENGINE_SUFFIXES, FAMILIES, Model, ModelError, ModelInfo, Network, checkpoint_of, resolve
from pipeline.models.decoder import DecodeSettings
from pipeline.types import Baked


def _onnxruntime(network: Network, device: str) -> Backend:
    from pipeline.backends.onnxruntime import OnnxRuntimeBackend, providers_for

    if device == "cpu" and network.cpu_backend is not None:
        return network.cpu_backend
    if network.onnx is None and network.module is None:
        raise ValueError(f"'{network.label}' is a built engine: run it with --backend auto")
    return OnnxRuntimeBackend(network.to_onnx(), providers_for(device))


def _torch(network: Network, device: str) -> Backend:
    from pipeline.backends.torch import TorchBackend

    if network.module is None:
        raise ValueError(f"the torch backend runs checkpoints; '{network.label}' is not one: use --backend auto")
    return TorchBackend(network.module, network.meta.fit.input_hw, network.meta.outputs, network.meta.batch, device)


def _engine_backend(fmt: str) -> Callable[[Network, str, bool], Backend]:
    """aoti / tensorrt: a built engine runs as it is, if rtpipe built it here or ``trust_engine``
    (``pipeline.trust``); a checkpoint is built first (engine cache)."""

    def make(network: Network, device: str, trust_engine: bool = False) -> Backend:
        from pipeline.build.cache import cached_engine

        if network.engine is None:
            if network.module is None:
                raise ValueError(f"the {fmt} backend needs a checkpoint or a .{'pt2' if fmt == 'aoti' else 'engine'} built by rtpipe build")
            if network.meta.fit.per_frame:
                return _per_shape(network, fmt, device, lambda shaped: make(shaped, device))
            network.engine = cached_engine(network, fmt, device)
        kind = ENGINE_SUFFIXES[network.engine.suffix.lower()]
        if kind != fmt:
            raise ValueError(f"'{network.engine}' is a {kind} engine: use --backend {kind}")
        from pipeline.sidecar import check_device
        from pipeline.trust import require_consent

        require_consent(network.engine, trust_engine)  # first: nothing of a foreign engine's sidecar is shown before
        check_device(network.engine, device)
        if fmt == "aoti":
            from pipeline.backends.aoti import AotiBackend

            return AotiBackend(network.engine, network.meta, device)
        from pipeline.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(network.engine, network.meta, device)

    return make


def _per_shape(network: Network, fmt: str, device: str, make: Callable[[Network], Backend]) -> Backend:
    """Engines for a checkpoint whose inputs follow each frame's shape: one per shape, built (or
    taken from the engine cache) when that shape first comes. What can be refused is refused now."""
    from pipeline.backends.per_shape import PerShapeBackend
    from pipeline.build.cache import cache_options

    meta = network.meta
    family = FAMILIES[meta.family]
    cache_options(meta, fmt, device).check_against(meta, has_module=True)
    if fmt == "tensorrt":
        from pipeline.backends.tensorrt import major_version

        major_version()  # installed? (a ValueError saying how to install it)

    def shaped(input_hw: tuple[int, int]) -> Backend:
        return make(Network(family.shape_meta(meta, input_hw), network.label, module=network.module, source=network.source))

    import torch

    max_batch = meta.batch or cache_options(meta, fmt, device).batch.max
    return PerShapeBackend(shaped, fmt, meta.fit.input_hw, max_batch, str(torch.device(device)), fmt == "tensorrt")


BACKEND_FACTORIES: dict[str, Callable[[Network, str], Backend]] = {
    "onnxruntime": _onnxruntime, "torch": _torch, "aoti": _engine_backend("aoti"), "tensorrt": _engine_backend("tensorrt")}


def pick_backend(network: Network, device: str) -> str:
    """``auto``: the fastest runtime available for the network on the device.

    A built engine runs on its own runtime. ONNX graphs run on ONNX Runtime. Checkpoints on the
    CPU too, after an in-memory export (0.7-2.4 s at load; inference 1.3-3.6x faster than torch
    eager here, see benchmarks/backend_choice.py); on CUDA, torch, which needs no extra package.
    """
    if network.engine is not None:
        return ENGINE_SUFFIXES[network.engine.suffix.lower()]
    if network.module is None or device == "cpu":
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
    imgsz: int | tuple[int, int] | None = None,
    weights: str | Path | None = None,
    trust_checkpoint: bool = False,
    trust_engine: bool = False,
    agnostic: bool = False,
    nms: bool = False,
    rect: bool = True,
) -> Model:
    """Load a model for ``predict`` or the pipeline.

    weights: for ``torchvision:<arch>``, a local state_dict file or ``"DEFAULT"`` (torchvision's
    weights API; downloads); None gives random weights with a warning. imgsz: checked against a
    fixed-size ONNX; sets the input size of models built here. trust_checkpoint: allow
    unpickling a .pt checkpoint's Python objects (only for files you trust). trust_engine: allow
    loading a .pt2 / .engine that rtpipe did not build on this account (native code; see
    ``pipeline.trust``). nms: also run NMS on
    NMS-free outputs (YOLO26 end-to-end, RT-DETR); dense outputs always get it. rect: a checkpoint
    takes each frame fitted to its own shape: YOLO padded only to a multiple of the stride
    (``Fit`` mode "rect", Ultralytics' predictor default), torchvision's FPN models resized as
    its transform does. ONNX Runtime runs it exported with dynamic height and width, torch as
    it is, aoti and tensorrt as one engine per input shape, built (or taken from the engine
    cache) when that shape first comes. (Fixed-size graphs and built engines keep their shape.)
    """
    if backend not in BACKENDS:
        raise ModelError(f"backend '{backend}' is not available: choose one of {', '.join(BACKENDS)}")
    settings = DecodeSettings(conf=conf, iou=iou, max_det=max_det, classes=None if classes is None else tuple(classes), agnostic=agnostic,
                              nms=nms)
    if backend in ("torch", "aoti", "tensorrt") or (backend == "auto" and device != "cpu") or imgsz is not None:
        spec = checkpoint_of(spec)  # a builtin's bundled ONNX has one input size; its checkpoint exports at any
    network = resolve(spec, weights, imgsz, settings, trust_checkpoint)
    meta = network.meta
    fit = meta.fit
    if imgsz is not None and network.module is None and fit.input_hw != input_hw(imgsz) and fit.mode == "letterbox":
        raise ModelError(
            f"model '{spec}' has a fixed input of {fit.input_hw[1]}x{fit.input_hw[0]}; drop --imgsz {imgsz} or export the model at {imgsz}"
        )
    name = pick_backend(network, device) if backend == "auto" else backend
    if rect and network.module is not None and network.onnx is None:
        # ONNX Runtime: exported with dynamic height and width; aoti / tensorrt: one engine per shape
        network.meta = meta = FAMILIES[meta.family].rect_meta(meta)
        fit = meta.fit
    try:
        factory = BACKEND_FACTORIES[name]
        be = factory(network, device, trust_engine) if name in ("aoti", "tensorrt") else factory(network, device)
    except ValueError as exc:  # includes SidecarError and BuildError
        raise ModelError(f"model '{spec}': {exc}") from exc
    if meta.baked is not None:
        _warn_baked(spec, meta.baked, settings)
    info = ModelInfo(meta.family, meta.task, meta.names, fit.input_hw, network.label, be.name, fit, meta.arch)
    return Model(be, FAMILIES[meta.family].decoder(meta, settings), info)


def _warn_baked(spec: str, baked: Baked, s: DecodeSettings) -> None:
    """Two-stage graphs run their own NMS: settings looser than the graph's cannot take effect."""
    if s.iou != baked.iou or s.conf < baked.conf or s.max_det > baked.max_det:
        warnings.warn(
            f"{spec}: this graph was built with conf {baked.conf}, iou {baked.iou}, max_det {baked.max_det}; "
            "its NMS IoU and lower limits apply (rebuild it to change them)",
            stacklevel=3,
        )
