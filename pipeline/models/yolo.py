"""YOLO family (Ultralytics YOLOv8/YOLO11 layout): metadata and decoding of raw outputs.

Raw layout: ``output0`` (B, 4 + nc (+ nm), N) with cx, cy, w, h in input pixels, class scores
after sigmoid and, for segmentation, nm mask coefficients; ``output1`` (B, nm, Hp, Wp)
prototypes.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np

from pipeline.models.settings import DecodeSettings
from pipeline.ops import batched_nms, cxcywh_to_xyxy, masks_from_prototypes, nms
from pipeline.preprocess import Fit
from pipeline.types import Detections, LetterboxMeta


def parse_names(value: str) -> list[str]:
    """Ultralytics writes class names as a Python dict literal, e.g. ``{0: 'person', 1: 'car'}``.

    Parsed with ``ast.literal_eval`` (literals only, never code); a list literal is accepted too.
    """
    try:
        names = ast.literal_eval(value)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"model metadata 'names' is not a dict or list literal: {value[:80]!r}") from exc
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, (list, tuple)):
        return [str(n) for n in names]
    raise ValueError(f"model metadata 'names' is not a dict or list literal: {value[:80]!r}")


class YoloDecoder:
    """outputs + letterbox metas -> one Detections per image (frame pixels)."""

    def __init__(self, num_classes: int, settings: DecodeSettings, max_candidates: int = 30000):
        self.nc = num_classes
        self.s = settings
        self.max_candidates = max_candidates

    def __call__(self, outputs: dict[str, np.ndarray], metas: list[LetterboxMeta]) -> list[Detections]:
        preds = outputs["output0"]
        protos = outputs.get("output1")
        if preds.shape[1] < 4 + self.nc:
            raise ValueError(f"output0 has {preds.shape[1]} channels, fewer than 4 + {self.nc} classes")
        return [self._one(preds[i], None if protos is None else protos[i], metas[i]) for i in range(len(metas))]

    def _one(self, pred: np.ndarray, protos: np.ndarray | None, meta: LetterboxMeta) -> Detections:
        s = self.s
        scores_all = pred[4 : 4 + self.nc]  # (nc, N)
        cls = scores_all.argmax(0)
        score = scores_all[cls, np.arange(pred.shape[1])]
        keep = score > s.conf
        if s.classes is not None:
            keep &= np.isin(cls, s.classes)
        idx = np.flatnonzero(keep)
        if len(idx) > self.max_candidates:
            idx = idx[np.argsort(-score[idx], kind="stable")[: self.max_candidates]]
        boxes = cxcywh_to_xyxy(pred[:4, idx].T.astype(np.float32))
        score, cls = score[idx], cls[idx]
        keep = nms(boxes, score, s.iou) if s.agnostic else batched_nms(boxes, score, cls, s.iou)
        keep = keep[: s.max_det]
        xyxy = meta.to_frame(boxes[keep])
        if protos is None:
            return Detections(xyxy, score[keep], cls[keep])
        coef = pred[4 + self.nc :, idx[keep]].T
        scale, pad = (meta.scale_x, meta.scale_y), (meta.pad_x, meta.pad_y)
        mask = masks_from_prototypes(coef, protos, xyxy, meta.frame_hw, meta.input_hw, scale, pad)
        # as Ultralytics' predictor does, a segmentation without a single mask pixel is no detection
        det = Detections(xyxy, score[keep], cls[keep], mask)
        has_mask = np.array([c.any() for c in mask.crops], bool)
        return det if has_mask.all() else det[has_mask]


# ---------------------------------------------------------------------------- metadata and checkpoints

PROTO_CHANNELS = 32


def meta_from_ultralytics(props: dict[str, str], input_hw: tuple[int, int], outputs: dict[str, list]) -> dict:
    """Engine metadata from an Ultralytics ONNX export's metadata_props (names, task, stride)."""
    names = parse_names(props["names"])
    task = props.get("task", "segment" if "output1" in outputs else "detect")
    return {
        "family": "yolo",
        "task": task,
        "names": names,
        "stride": int(props.get("stride", 32)),
        "fit": Fit(tuple(input_hw)).to_dict(),
        "outputs": list(outputs),
    }


def check_outputs(meta: dict, outputs: dict[str, list]) -> str | None:
    """None when the outputs have the Ultralytics layout for ``meta``'s task, else what is wrong."""
    nc = len(meta["names"])
    seg = meta["task"] == "segment"
    want = 4 + nc + (PROTO_CHANNELS if seg else 0)
    expected = f"output0 [B, {want}, N] (4 box + {nc} class" + (f" + {PROTO_CHANNELS} mask" if seg else "") + " channels)"
    if seg:
        expected += f" and output1 [B, {PROTO_CHANNELS}, H/4, W/4]"
    out0 = outputs.get("output0")
    if out0 is None or len(out0) != 3 or (isinstance(out0[1], int) and out0[1] != want):
        return f"expected {expected}, found {outputs}"
    if seg and (len(outputs.get("output1") or ()) != 4):
        return f"expected {expected}, found {outputs}"
    if meta["task"] not in ("detect", "segment"):
        return f"task '{meta['task']}' is not supported (detect, segment)"
    return None


def decoder(meta: dict, settings: DecodeSettings) -> YoloDecoder:
    return YoloDecoder(len(meta["names"]), settings)


def checkpoint_graph(path: Path, imgsz: int | None, trust: bool):
    """A YOLO-layout .pt checkpoint -> Graph (torch module + metadata): rtpipe's own networks
    (``pipeline.models.rtnet``, weights only) or an Ultralytics checkpoint (needs ``ultralytics``).

    Ultralytics checkpoints pickle the model's classes, which ``torch.load(weights_only=True)``
    refuses; only with ``trust`` are they unpickled (that runs code from the file).
    """
    import torch

    from pipeline.models import Graph, rtnet

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the refusal below says what matters
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if not trust:
            raise ValueError(
                f"checkpoint '{path}' holds pickled Python objects ({str(exc).splitlines()[0][:120]}); "
                "loading it runs code from the file: pass --trust-checkpoint if you trust its source"
            ) from exc
        try:
            import ultralytics  # noqa: F401  (the pickle refers to its classes)
        except ImportError as imp:
            raise ValueError(f"checkpoint '{path}' needs the ultralytics package: pip install 'rtpipe[ultralytics]'") from imp
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if rtnet.is_checkpoint(ckpt):
        net = rtnet.from_checkpoint(ckpt, str(path), imgsz)
        return Graph(rtnet.meta(net), str(path), module=net, source=path)
    model = ckpt.get("ema") or ckpt.get("model") if isinstance(ckpt, dict) else None
    if model is None or not hasattr(model, "model"):
        raise ValueError(
            f"checkpoint '{path}' is not an Ultralytics model checkpoint (no 'model' module inside); "
            "for a torchvision state_dict use --model torchvision:<arch> --weights FILE"
        )
    model = model.float().eval()
    head = model.model[-1]
    if getattr(head, "end2end", False):
        raise ValueError(f"checkpoint '{path}': NMS-free (end2end) heads are not supported yet; export a YOLOv8/YOLO11 model")
    task = "segment" if hasattr(head, "proto") else "detect"
    if hasattr(model, "fuse"):
        model = model.fuse(verbose=False) if "verbose" in model.fuse.__code__.co_varnames else model.fuse()
    head = model.model[-1]
    head.export, head.format, head.dynamic = True, "onnx", False
    names = model.names if isinstance(model.names, (list, tuple)) else [model.names[k] for k in sorted(model.names)]
    size = imgsz or int((ckpt.get("train_args") or {}).get("imgsz", 640))
    meta = {
        "family": "yolo",
        "task": task,
        "names": list(names),
        "stride": int(max(model.stride)),
        "fit": Fit((size, size)).to_dict(),
        "outputs": ["output0", "output1"] if task == "segment" else ["output0"],
    }
    return Graph(meta, str(path), module=_YoloGraph(model), source=path)


def _YoloGraph(model):
    """The Ultralytics model as an export module: (B, 3, H, W) -> output0 (, output1)."""
    import torch

    class YoloGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, images):
            out = self.model(images)
            return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    return YoloGraph().eval()
