"""Image classification (torchvision ResNet, VGG, MobileNetV3, EfficientNet): the top classes of
a whole frame, or of each detection's crop (``pipeline.runtime.classify``).

- Input: torchvision's classification preset of the architecture's default weights: the uint8
  frame resized so its short side is ``resize`` (antialiased, bilinear or bicubic), the centre
  ``crop`` x ``crop`` cut out, normalised inside the graph (``Fit`` mode "centercrop").
- Graph: normalisation + the network + softmax -> ``probs`` (B, classes).
- Decoding: the ``TOPK`` most probable classes per frame -> ``Detections`` with no boxes and
  ``labels``.

torch and torchvision are imported only by the functions that need them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.models.decoder import DecodeSettings
from pipeline.types import Detections, EngineMeta, Fit, FitTransform, Labels

# architecture -> its default weights' enum in torchvision.models (preset sizes and class names come from it)
ARCHS = {
    "resnet18": "ResNet18_Weights",
    "resnet50": "ResNet50_Weights",
    "vgg16": "VGG16_Weights",
    "mobilenet_v3_small": "MobileNet_V3_Small_Weights",
    "mobilenet_v3_large": "MobileNet_V3_Large_Weights",
    "efficientnet_b0": "EfficientNet_B0_Weights",
}
TOPK = 5
OUTPUTS = ("probs",)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _weights_enum(arch: str):
    import torchvision.models as tvm

    return getattr(tvm, ARCHS[arch]).DEFAULT


def build(arch: str, weights: str | Path | None = None, seed: int = 0, num_classes: int | None = None):
    """The torchvision classifier in eval mode. weights: a local state_dict file (its class count
    read from it), ``"DEFAULT"`` (torchvision's weights API; downloads), or None for random init
    with ``seed``. num_classes: for random init (default 1000, ImageNet)."""
    import torch
    import torchvision.models as tvm

    fn = getattr(tvm, arch)
    if isinstance(weights, str) and weights.upper() == "DEFAULT":
        return fn(weights="DEFAULT").eval()
    state = None
    if weights is not None:
        state = read_state(weights, arch)
        num_classes = classes_in(state, arch)
    torch.manual_seed(seed)
    model = fn(weights=None, num_classes=num_classes or 1000).eval()
    if state is not None:
        from pipeline.models.torchvision import load_state_dict

        load_state_dict(model, weights, arch)
    return model


def read_state(weights: str | Path, arch: str):
    """A weights file's contents (``torch.load(weights_only=True)``); a ValueError or
    FileNotFoundError in one line saying what the file should be."""
    from pipeline.models.checkpoint_load import load_weights_only, require_safe_torch

    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file '{path}' not found: give a state_dict saved from torchvision's {arch}")
    require_safe_torch()
    try:
        return load_weights_only(path)
    except Exception as exc:
        raise ValueError(f"weights file '{path}' is not a plain state_dict ({exc.__class__.__name__}): "
                         "save one with torch.save(model.state_dict(), f)") from exc


def saved_names(weights) -> list[str] | None:
    """The class names a fine-tuned head's file carries (``pipeline.models.finetune.save``), or None."""
    if weights is None or (isinstance(weights, str) and weights.upper() == "DEFAULT"):
        return None
    state = read_state(weights, "the classifier")
    names = state.get("names") if isinstance(state, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else None


def classes_in(state, arch: str) -> int:
    """The class count of a classifier state_dict: the rows of its last 2-D weight (the head)."""
    if not isinstance(state, dict):
        raise ValueError(f"weights for {arch} hold a {type(state).__name__}, not a state_dict")
    state = state.get("model", state) if isinstance(state.get("model"), dict) else state
    heads = [v for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2]
    if not heads:
        raise ValueError(f"weights for {arch}: no classifier layer found in the state_dict")
    return int(heads[-1].shape[0])


def names(arch: str, n_classes: int, given: list[str] | None = None) -> tuple[str, ...]:
    """Class names: ``given`` (a fine-tuned head's), ImageNet's for 1000 classes, else numbers."""
    if given is not None:
        return tuple(given)
    if n_classes == 1000:
        return tuple(_weights_enum(arch).meta["categories"])
    return tuple(str(i) for i in range(n_classes))


def describe(arch: str, n_classes: int = 1000, class_names: list[str] | None = None, imgsz: int | None = None) -> EngineMeta:
    """The engine metadata: the preset of the architecture's default weights (imgsz: another crop size)."""
    preset = _weights_enum(arch).transforms()
    crop, resize = int(preset.crop_size[0]), int(preset.resize_size[0])
    if imgsz is not None:
        if isinstance(imgsz, tuple):
            raise ValueError(f"{arch} takes one size, the square crop: give --imgsz N")
        resize, crop = round(resize * imgsz / crop), int(imgsz)
    interp = "bicubic" if "BICUBIC" in str(preset.interpolation) else "bilinear"
    fit = Fit((crop, crop), "centercrop", resize, resize * 16, interp=interp)
    return EngineMeta(family="classify", task="classify", names=names(arch, n_classes, class_names), fit=fit, outputs=OUTPUTS,
                      arch=arch, mean=MEAN, std=STD)


def rect_meta(meta: EngineMeta) -> EngineMeta:
    return meta  # a fixed square crop


def shape_meta(meta: EngineMeta, input_hw: tuple[int, int]) -> EngineMeta:
    return meta


def graph(model, meta: EngineMeta):
    """The exportable module: [0, 1] RGB (B, 3, H, W) in, ``probs`` (B, classes) out."""
    from pipeline.models.normalised import Normalised

    class Exported(Normalised):
        def forward(self, images):
            return (self.model(self.normalise(images)).softmax(1),)

    return Exported(model, meta.mean, meta.std).eval()


def decoder(meta: EngineMeta, settings: DecodeSettings) -> ClassifyDecoder:
    return ClassifyDecoder(meta, settings)


class ClassifyDecoder:
    """``probs`` (B, classes) -> per frame its ``TOPK`` classes, most probable first (only the
    ``classes`` asked for, when given), as ``Detections.labels``."""

    def __init__(self, meta: EngineMeta, settings: DecodeSettings):
        self.names = tuple(meta.names)
        self.classes = None if settings.classes is None else np.asarray(settings.classes)

    def on_device(self) -> None:
        return None

    def top(self, probs: np.ndarray, k: int = TOPK) -> list[Labels]:
        """(B, classes) probabilities -> each row's ``k`` best as Labels."""
        p = np.asarray(probs, np.float32)
        if self.classes is not None:
            wanted = np.isin(np.arange(p.shape[1]), self.classes)
            p = np.where(wanted, p, -1)
            k = min(k, int(wanted.sum()))  # only the asked-for classes this model has
        order = np.argsort(-p, axis=1, kind="stable")[:, :k]
        return [Labels(o, p[i, o], self.names) for i, o in enumerate(order)]

    def __call__(self, outputs: dict[str, np.ndarray], transforms: list[FitTransform]) -> list[Detections]:
        return [Detections.empty(labels=lab) for lab in self.top(outputs["probs"])]


def check_outputs(meta: EngineMeta, outputs: dict[str, list]) -> str | None:
    return None if "probs" in outputs else f"expected output 'probs' for {meta.arch}, the graph has {list(outputs)}"
