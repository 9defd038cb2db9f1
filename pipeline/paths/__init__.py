"""The model's four steps for one frame, and the one place that chooses where they run.

A ``ModelPath`` does preprocess, infer, postprocess and overlay (the stages' own words) on
``Item``s, the per-frame record the runtime passes between its stage threads:

- ``CpuPath``: host memory: numpy + OpenCV fitting, the backend on numpy arrays, the family's
  host decoder, OpenCV drawing. Every backend runs on it.
- ``GpuPath``: frames go to the model's device once (pinned uploads, ``pipeline.cuda``) and stay
  there: device fitting, the engine on tensors (CUDA graphs when fixed-shape), the family's
  device decoder when it has one (else the outputs come to the host and its host decoder runs),
  masks and outlines drawn on the device, one copy down, labels on the CPU. It needs a backend
  that takes tensors (``Backend.tensor_device``). On CPU tensors the same code runs without
  streams, which is how CI tests it against ``CpuPath``.

``path_for(model, "auto" | "cpu" | "gpu")`` is the only place that picks one; the runtime and
``rtpipe bench`` both call it. Choosing "auto" never imports torch (the core install has none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pipeline.models import Model
from pipeline.overlay.host import Overlay
from pipeline.types import Detections, FitTransform, Frame

if TYPE_CHECKING:
    import torch

    from pipeline.ops.masks_device import DeviceMasks

PATHS = ("auto", "cpu", "gpu")


@dataclass
class DeviceFrame:
    """What the GPU path keeps of a frame on the device between its steps."""

    image: torch.Tensor  # HxWx3 uint8, the uploaded frame (drawn on in overlay)
    ready: torch.cuda.Event | None  # recorded when the upload and fitting are done (CUDA only)
    masks: DeviceMasks | None = None  # the decoded masks, still on the device


@dataclass
class Item:
    """One frame on its way through the stages; each step fills in its field."""

    frame: Frame
    tensor: np.ndarray | torch.Tensor | None = None  # network input (numpy on the CPU path, a tensor on the GPU path)
    transform: FitTransform | None = None  # how the frame entered the network
    detections: Detections | None = None
    image: np.ndarray | None = None  # the drawn picture, when a sink needs one
    device: DeviceFrame | None = None  # GpuPath only
    events: list = field(default_factory=list)  # line and zone events of this frame (pipeline.analytics.Event)
    counts: dict | None = None  # the lines' and zones' counts after this frame, when any are set


class ModelPath(Protocol):
    """The model's steps; the runtime calls each from its own stage thread."""

    name: str  # "cpu" or "gpu", as ``--path`` and the metrics say
    model: Model

    def preprocess(self, item: Item) -> None:
        """Fill ``item.tensor`` and ``item.transform`` (one thread per source)."""

    def infer(self, items: list[Item]) -> dict:
        """The engine on the items' inputs stacked into one batch -> its raw outputs."""

    def engine_call(self, items: list[Item]) -> Callable[[], object]:
        """The engine alone on these prepared items, as a call to repeat (``rtpipe bench``)."""

    def postprocess(self, outputs: dict, items: list[Item]) -> None:
        """Fill each item's ``detections`` (frame pixels) from the batch's outputs."""

    def overlay(self, item: Item, hud: dict | None) -> np.ndarray:
        """The annotated picture of the item (a new HxWx3 uint8 BGR array)."""


class ShapeGroups(list):
    """A batch's outputs when its frames had different input shapes: (indices, outputs) per shape."""


class CpuPath:
    """The model's steps on host memory."""

    name = "cpu"

    def __init__(self, model: Model):
        self.model = model
        self.drawing = Overlay(model.info.names)

    def preprocess(self, item: Item) -> None:
        item.tensor, item.transform = self.model.preprocess(item.frame.image)

    def infer(self, items: list[Item]) -> dict | ShapeGroups:
        """One model call for the batch; frames fitted to different shapes (sources of other
        aspects with a "rect" fit) make one call per shape."""
        shapes = [it.tensor.shape for it in items]
        if len(set(shapes)) == 1:
            return self.model.infer(np.stack([it.tensor for it in items]))
        groups = ShapeGroups()
        for shape in dict.fromkeys(shapes):
            idx = [i for i, s in enumerate(shapes) if s == shape]
            groups.append((idx, self.model.infer(np.stack([items[i].tensor for i in idx]))))
        return groups

    def engine_call(self, items: list[Item]) -> Callable[[], object]:
        batch = np.stack([it.tensor for it in items])
        return lambda: self.model.infer(batch)

    def postprocess(self, outputs: dict | ShapeGroups, items: list[Item]) -> None:
        for idx, out in outputs if isinstance(outputs, ShapeGroups) else [(range(len(items)), outputs)]:
            for i, d in zip(idx, self.model.postprocess(out, [items[i].transform for i in idx])):
                items[i].detections = d

    def overlay(self, item: Item, hud: dict | None) -> np.ndarray:
        return self.drawing.draw(item.frame.image, item.detections, hud)


def runs_on_gpu(model: Model) -> bool:
    """The model's backend takes tensors on a CUDA device (torch, aoti, tensorrt on cuda)."""
    device = model.backend.tensor_device
    return device is not None and device.startswith("cuda")


def path_for(model: Model, path: str = "auto") -> ModelPath:
    """auto: the GPU path when the model's backend takes tensors on CUDA, else the CPU path.
    cpu: host pre/post-processing whatever the backend (to compare). gpu: on the backend's
    device (CPU tensors for a torch backend on the CPU); a ValueError for a backend that takes
    numpy only (ONNX Runtime)."""
    if path not in PATHS:
        raise ValueError(f"path '{path}': choose one of {', '.join(PATHS)}")
    if path == "cpu" or (path == "auto" and not runs_on_gpu(model)):
        return CpuPath(model)
    if model.backend.tensor_device is None:  # before importing torch: the core install has none
        raise ValueError(f"the {model.backend.name} backend does not run on tensors: the GPU path needs torch, aoti or tensorrt")
    from pipeline.paths.gpu import GpuPath

    return GpuPath(model)
