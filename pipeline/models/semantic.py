"""Semantic segmentation (torchvision FCN, DeepLabV3, LR-ASPP): a class for every pixel.

- Input: the frame resized so its short side is ``min_size`` (torchvision's
  ``SemanticSegmentation`` preset: 520 for its weights; the long side ``int(min_size * long /
  short)``), normalised inside the graph. The networks are fully convolutional, so by default
  each frame gets an input of its own shape (``Fit`` mode "shortside" with stride 1); a fixed
  engine places the resized frame top-left in its input and the rest is cropped away.
- Graph: normalisation + the network + argmax over classes -> ``class_map`` (B, H, W) uint8 at
  the input's size (the network upsamples its logits to the input itself). One byte per pixel
  leaves the engine instead of one float per class and pixel.
- Decoding: the resized frame's part of the map, scaled to the frame with nearest-neighbour
  -> ``Detections`` with no boxes and a ``ClassMap``.

torch and torchvision are imported only by the functions that need them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.models.decoder import DecodeSettings
from pipeline.types import ClassMap, Detections, EngineMeta, Fit, FitTransform

ARCHS = {
    "fcn_resnet50": "fcn",
    "fcn_resnet101": "fcn",
    "deeplabv3_resnet50": "deeplabv3",
    "deeplabv3_resnet101": "deeplabv3",
    "deeplabv3_mobilenet_v3_large": "deeplabv3",
    "lraspp_mobilenet_v3_large": "lraspp",
}
MIN_SIZE = 520  # the short side torchvision's segmentation weights were trained and evaluated at
MAX_ASPECT = 4  # a fixed input's long side: MAX_ASPECT x the short side at most (and 16:9 by default)
OUTPUTS = ("class_map",)


def build(arch: str, weights: str | Path | None = None, seed: int = 0, num_classes: int = 21):
    """The torchvision segmentation model in eval mode (no auxiliary head).

    weights: a local state_dict file, ``"DEFAULT"`` (torchvision's weights API; downloads), or
    None for random init with ``seed``.
    """
    import torch
    from torchvision.models import segmentation

    fn = getattr(segmentation, arch)
    if isinstance(weights, str) and weights.upper() == "DEFAULT":
        return fn(weights="DEFAULT", aux_loss=None).eval()
    torch.manual_seed(seed)
    model = fn(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=None).eval()
    if weights is not None:
        from pipeline.models.torchvision import load_state_dict

        load_state_dict(model, weights, arch)
    return model


def names() -> list[str]:
    """The 21 Pascal VOC categories of torchvision's segmentation weights (index = class id)."""
    from torchvision.models.segmentation import FCN_ResNet50_Weights

    return list(FCN_ResNet50_Weights.DEFAULT.meta["categories"])


def describe(arch: str, imgsz: int | tuple[int, int] | None = None) -> EngineMeta:
    """The engine metadata. imgsz: the short side frames are resized to (default 520)."""
    if isinstance(imgsz, tuple):
        raise ValueError(f"{arch} takes one size, the short side frames are resized to: give --imgsz N")
    short = int(imgsz or MIN_SIZE)
    input_hw = (short, math.ceil(short * 16 / 9))  # a fixed engine's input: a 16:9 frame fills it
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    fit = Fit(input_hw, "shortside", short, short * MAX_ASPECT, mean)
    return EngineMeta(family="semantic", task="semantic", names=tuple(names()), fit=fit, outputs=OUTPUTS, arch=arch,
                      kind=ARCHS[arch], mean=mean, std=std)


def rect_meta(meta: EngineMeta) -> EngineMeta:
    """Inputs follow each frame (stride 1: exactly the resized frame), the networks take any size."""
    return replace(meta, fit=replace(meta.fit, stride=1)) if meta.fit.mode == "shortside" else meta


def shape_meta(meta: EngineMeta, input_hw: tuple[int, int]) -> EngineMeta:
    """The fixed-size meta of one input shape (the engine for frames of that shape)."""
    return replace(meta, fit=replace(meta.fit, input_hw=tuple(input_hw), stride=0))


def graph(model, meta: EngineMeta):
    """The exportable module: [0, 1] RGB (B, 3, H, W) in, ``class_map`` (B, H, W) uint8 out."""
    import torch

    from pipeline.models.normalised import Normalised

    class Exported(Normalised):
        def forward(self, images):
            logits = self.model(self.normalise(images))["out"]
            return (logits.argmax(1).to(torch.uint8),)  # a tuple, as every graph returns

    return Exported(model, meta.mean, meta.std).eval()


def decoder(meta: EngineMeta, settings: DecodeSettings) -> SemanticDecoder:
    return SemanticDecoder(meta)


class SemanticDecoder:
    """``class_map`` (B, H, W) at the input's size -> one ``Detections`` per frame holding only a
    ``ClassMap`` in frame pixels: the resized frame's part of the input, scaled back to the
    frame with nearest-neighbour (each frame pixel takes the class of the input pixel its centre
    falls in)."""

    def __init__(self, meta: EngineMeta):
        self.n_classes = len(meta.names)

    def on_device(self) -> SemanticDeviceDecoder:
        return SemanticDeviceDecoder()

    def __call__(self, outputs: dict[str, np.ndarray], transforms: list[FitTransform]) -> list[Detections]:
        maps = outputs["class_map"]
        return [self._one(maps[i], t) for i, t in enumerate(transforms)]

    def _one(self, ids: np.ndarray, t: FitTransform) -> Detections:
        h, w = t.frame_hw
        nh, nw = round(h * t.scale_y), round(w * t.scale_x)
        part = np.asarray(ids[:nh, :nw], dtype=np.uint8)
        if (nh, nw) != (h, w):
            part = part[_centres(nh, h)][:, _centres(nw, w)]
        return Detections.empty(class_map=ClassMap(np.ascontiguousarray(part)))


class SemanticDeviceDecoder:
    """The same decoding on the outputs' device (the GPU path): the map scaled to the frame by an
    index gather there, then one copy down (sinks and trackers take host arrays) -> [(Detections, None)]."""

    def __call__(self, outputs: dict, transforms: list[FitTransform]) -> list[tuple[Detections, None]]:
        import torch

        maps, out = outputs["class_map"], []
        for i, t in enumerate(transforms):
            h, w = t.frame_hw
            nh, nw = round(h * t.scale_y), round(w * t.scale_x)
            part = maps[i, :nh, :nw]
            if (nh, nw) != (h, w):
                rows, cols = (torch.from_numpy(_centres(n, m)).to(part.device) for n, m in ((nh, h), (nw, w)))
                part = part.index_select(0, rows).index_select(1, cols)
            out.append((Detections.empty(class_map=ClassMap(np.ascontiguousarray(part.to(torch.uint8).cpu().numpy()))), None))
        return out


def _centres(n_in: int, n_out: int) -> np.ndarray:
    """For each of ``n_out`` pixels, the index of the ``n_in`` pixel its centre falls in
    (torch's "nearest-exact"; OpenCV's INTER_NEAREST_EXACT rounds differently at some scales)."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def check_outputs(meta: EngineMeta, outputs: dict[str, list]) -> str | None:
    if "class_map" not in outputs:
        return f"expected output 'class_map' for {meta.arch}, the graph has {list(outputs)}"
    return None
