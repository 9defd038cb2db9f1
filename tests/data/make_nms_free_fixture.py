"""NMS-free Ultralytics models for the parity tests (needs ``pip install ultralytics``; offline).

    python tests/data/make_nms_free_fixture.py OUT_DIR

builds, from Ultralytics' bundled YAMLs with seeded random weights: YOLO26n, YOLO26n-seg and
RT-DETR-l, saved as Ultralytics saves them (``NAME.pt``), and Ultralytics' own ONNX exports at
320x320: ``NAME-e2e.onnx`` (end-to-end head, (B, 300, 6 + nm) rows) and ``NAME-dense.onnx``
(the same model's one-to-many head, (B, 4 + nc + nm, N), needs NMS) for YOLO26, and
``rtdetr-l.onnx`` (top-k rows). Convolutions and linear layers are re-drawn with unit gain and
the class biases zeroed, so a fresh model's scores spread instead of all sitting at the prior;
the prototypes' last convolution is scaled up so mask logits are not all near 0.
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import torch

IMGSZ, GAIN, CLS_GAIN, RTDETR_CLS_GAIN, PROTO_GAIN = 320, 2.0, 30.0, 0.3, 100.0
YOLO26 = ("yolo26n", "yolo26n-seg")


def _redraw(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * (GAIN / mod.weight[0].numel()) ** 0.5)


def _class_heads(head) -> list:
    """The last layer of every class-score branch of a YOLO26 or RT-DETR head."""
    if hasattr(head, "dec_score_head"):
        return [*head.dec_score_head, head.enc_score_head]
    return [seq[-1] for name in ("cv3", "one2one_cv3") for seq in (getattr(head, name, None) or [])]


def build(name: str, out: Path, seed: int = 1) -> Path:
    """NAME.pt with seeded weights whose class scores spread (see the module docstring)."""
    from ultralytics import RTDETR, YOLO

    torch.manual_seed(0)
    model = (RTDETR if name.startswith("rtdetr") else YOLO)(f"{name}.yaml")
    _redraw(model.model, seed)
    with torch.no_grad():
        for layer in _class_heads(model.model.model[-1]):
            layer.bias.zero_()
            layer.weight.mul_(RTDETR_CLS_GAIN if name.startswith("rtdetr") else CLS_GAIN)
        proto = getattr(model.model.model[-1], "proto", None)
        if proto is not None:  # prototypes far from 0, so masks are not decided by rounding
            proto.cv3.conv.weight.mul_(PROTO_GAIN)
    pt = out / f"{name}.pt"
    model.save(str(pt))
    return pt


def export(pt: Path, end2end: bool | None, target: Path) -> Path:
    """Ultralytics' ONNX export at IMGSZ; end2end: True the NMS-free head, False the dense head, None (RT-DETR) as it is."""
    from ultralytics import RTDETR, YOLO

    kwargs = {} if end2end is None else {"nms": False if end2end else None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls = RTDETR if pt.stem.startswith("rtdetr") else YOLO
        path = cls(str(pt)).export(format="onnx", imgsz=IMGSZ, simplify=False, dynamic=False, opset=17, verbose=False, **kwargs)
    shutil.move(path, target)
    return target


def main(out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in YOLO26:
        pt = files[name] = build(name, out)
        files[f"{name}-e2e"] = export(pt, True, out / f"{name}-e2e.onnx")
        files[f"{name}-dense"] = export(pt, False, out / f"{name}-dense.onnx")
    pt = files["rtdetr-l"] = build("rtdetr-l", out)
    files["rtdetr-l-onnx"] = export(pt, None, out / "rtdetr-l.onnx")
    return files


if __name__ == "__main__":
    for key, path in main(Path(sys.argv[1])).items():
        print(key, path)
