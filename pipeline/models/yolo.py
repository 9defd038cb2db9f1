"""YOLO family (Ultralytics YOLOv8/YOLO11/YOLO26 and RT-DETR): metadata and decoding of raw outputs.

Output layouts (``EngineMeta.layout``), recognised from the engine's metadata and shapes, never
from a file name (``layout_of``):

============== ============================== ================================================
layout         ``output0``                    what a row holds
============== ============================== ================================================
``dense``      (B, 4 + nc (+ nm), N)          per anchor: cx, cy, w, h (input pixels), class
                                              scores after sigmoid (, mask coefficients);
                                              YOLOv8/11, YOLO26 with end2end off: needs NMS
``end2end``    (B, K, 6 (+ nm))               final detections: x1, y1, x2, y2 (input pixels),
                                              score, class (, mask coefficients); YOLO26
``rtdetr``     (B, K, 4 + nc)                 per query: cx, cy, w, h normalised to the input,
                                              class scores
``rtdetr-topk`` (B, K, 6)                     top-k queries: cx, cy, w, h normalised, score,
                                              class (Ultralytics' RT-DETR export)
============== ============================== ================================================

Segmentation adds ``output1`` (B, nm, Hp, Wp) prototypes. NMS-free layouts are decoded without
NMS (``DecodeSettings.nms`` asks for it anyway).
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.models.decoder import DecodeSettings
from pipeline.ops import batched_nms, cxcywh_to_xyxy, masks_from_prototypes, nms
from pipeline.types import BoxMasks, Detections, EngineMeta, Fit, FitTransform

LAYOUTS = ("dense", "end2end", "rtdetr", "rtdetr-topk")
MAX_CLASSES = 100_000  # what a model may name (metadata beyond it is refused, not allocated for)


def parse_names(value: str) -> list[str]:
    """Ultralytics writes class names as a Python dict literal, e.g. ``{0: 'person', 1: 'car'}``.

    Parsed with ``ast.literal_eval`` (literals only, never code); a list literal is accepted too.
    """
    try:
        names = ast.literal_eval(value)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"model metadata 'names' is not a dict or list literal: {value[:80]!r}") from exc
    if isinstance(names, dict):
        if sorted(names, key=str) != sorted(range(len(names)), key=str) or not all(type(k) is int for k in names):
            raise ValueError(f"model metadata 'names' must map class ids 0..N-1 to names, got keys {sorted(map(repr, names))[:5]}")
        names = [names[k] for k in range(len(names))]
    if not isinstance(names, (list, tuple)):
        raise ValueError(f"model metadata 'names' is not a dict or list literal: {value[:80]!r}")
    if not names or len(names) > MAX_CLASSES:
        raise ValueError(f"model metadata 'names' has {len(names)} classes: expected 1 to {MAX_CLASSES}")
    return [str(n) for n in names]


class DenseDecoder:
    """``dense`` outputs + transforms -> one Detections per image (frame pixels): candidates
    above ``conf``, class filter, top ``max_candidates``, class-aware NMS, ``max_det``, masks."""

    def __init__(self, num_classes: int, settings: DecodeSettings, max_candidates: int = 30000):
        self.nc = num_classes
        self.s = settings
        self.max_candidates = max_candidates

    def on_device(self):
        from pipeline.models.yolo_device import DenseDeviceDecoder

        return DenseDeviceDecoder(self.nc, self.s, self.max_candidates)

    def __call__(self, outputs: dict[str, np.ndarray], transforms: list[FitTransform]) -> list[Detections]:
        preds = outputs["output0"]
        protos = outputs.get("output1")
        if preds.shape[1] < 4 + self.nc:
            raise ValueError(f"output0 has {preds.shape[1]} channels, fewer than 4 + {self.nc} classes")
        return [self._one(preds[i], None if protos is None else protos[i], transforms[i]) for i in range(len(transforms))]

    def _one(self, pred: np.ndarray, protos: np.ndarray | None, transform: FitTransform) -> Detections:
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
        keep = nms(boxes, score, s.iou, s.max_det) if s.agnostic else batched_nms(boxes, score, cls, s.iou, s.max_det)
        xyxy = transform.to_frame(boxes[keep])
        if protos is None:
            return Detections(xyxy, score[keep], cls[keep])
        return with_masks(xyxy, score[keep], cls[keep], pred[4 + self.nc :, idx[keep]].T, protos, transform)


def with_masks(xyxy: np.ndarray, score: np.ndarray, cls: np.ndarray, coef: np.ndarray, protos: np.ndarray,
               transform: FitTransform) -> Detections:
    """Detections with their masks from the prototypes; as Ultralytics' predictor does, a
    segmentation without a single mask pixel is no detection."""
    scale, pad = (transform.scale_x, transform.scale_y), (transform.pad_x, transform.pad_y)
    mask = masks_from_prototypes(coef, protos, xyxy, transform.frame_hw, transform.input_hw, scale, pad)
    det = Detections(xyxy, score, cls, mask)
    keep = nonempty(mask)
    return det if keep.all() else det[keep]


def nonempty(masks: BoxMasks) -> np.ndarray:
    """(N,) bool: which masks have at least one pixel. As Ultralytics' predictor does, a
    segmentation without a single mask pixel is no detection (host and device decoders)."""
    return np.array([c.any() for c in masks.crops], bool)


class NmsFreeDecoder:
    """NMS-free outputs (``end2end``, ``rtdetr``, ``rtdetr-topk``) -> one Detections per image.

    Rows are final detections: keep those above ``conf`` (and in ``classes``), the first
    ``max_det`` of them in the engine's order (best first), map the boxes to frame pixels, and
    build masks from the prototypes (YOLO26-seg). ``settings.nms`` runs class-aware NMS on
    them as well, for engines whose rows may still overlap.
    """

    def __init__(self, num_classes: int, settings: DecodeSettings, layout: str, seg: bool):
        if layout not in LAYOUTS[1:]:
            raise ValueError(f"NmsFreeDecoder decodes {LAYOUTS[1:]}, not '{layout}'")
        self.nc, self.s, self.layout, self.seg = num_classes, settings, layout, seg

    def on_device(self) -> None:
        return None  # rows are few and final: decoded on the host

    def __call__(self, outputs: dict[str, np.ndarray], transforms: list[FitTransform]) -> list[Detections]:
        rows, protos = outputs["output0"], outputs.get("output1")
        return [self._one(rows[i], None if protos is None else protos[i], transforms[i]) for i in range(len(transforms))]

    def _rows(self, rows: np.ndarray, transform: FitTransform) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """(K, C) rows -> boxes xyxy in input pixels, scores, classes, mask coefficients."""
        rows = rows.astype(np.float32, copy=False)
        if self.layout == "end2end":
            return rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64), rows[:, 6:] if self.seg else None
        ih, iw = transform.input_hw
        boxes = cxcywh_to_xyxy(rows[:, :4]) * np.array([iw, ih, iw, ih], np.float32)
        if self.layout == "rtdetr-topk":
            return boxes, rows[:, 4], rows[:, 5].astype(np.int64), None
        scores = rows[:, 4 : 4 + self.nc]
        cls = scores.argmax(1)
        return boxes, scores[np.arange(len(rows)), cls], cls, None

    def _one(self, rows: np.ndarray, protos: np.ndarray | None, transform: FitTransform) -> Detections:
        s = self.s
        boxes, score, cls, coef = self._rows(rows, transform)
        keep = score > s.conf
        if s.classes is not None:
            keep &= np.isin(cls, s.classes)
        idx = np.flatnonzero(keep)
        if s.nms:
            order = idx[np.argsort(-score[idx], kind="stable")]
            kept = nms(boxes[order], score[order], s.iou) if s.agnostic else batched_nms(boxes[order], score[order], cls[order], s.iou)
            idx = order[kept]
        idx = idx[: s.max_det]
        xyxy = transform.to_frame(boxes[idx])
        if coef is None or protos is None:
            return Detections(xyxy, score[idx], cls[idx])
        return with_masks(xyxy, score[idx], cls[idx], coef[idx], protos, transform)


# ---------------------------------------------------------------------------- metadata and checkpoints

PROTO_CHANNELS = 32


def layout_of(out0: list, nc: int, seg: bool, head: str | None = None, end2end: bool | None = None) -> str | None:
    """The layout (see the module docstring) of ``output0``'s shape, or None when it fits none.

    head / end2end: what the engine's metadata says (Ultralytics exports write ``head`` and
    ``end2end``); they settle the shapes two layouts share (RT-DETR's (B, K, 6) top-k rows vs
    YOLO26's, or 4 + nc == 6). Unknown (dynamic) sizes match nothing.
    """
    if len(out0) != 3:
        return None
    c1, c2 = out0[1], out0[2]
    nm = PROTO_CHANNELS if seg else 0
    if head == "RTDETRDecoder":
        return "rtdetr-topk" if c2 == 6 else "rtdetr" if c2 == 4 + nc else None
    if c1 == 4 + nc + nm and end2end is not True:
        return "dense"
    if c2 == 6 + nm and end2end is not False:
        return "end2end"
    if c2 == 4 + nc and not seg:
        return "rtdetr"
    return None


def rect_meta(meta: EngineMeta) -> EngineMeta:
    """``meta`` with the "rect" fit where its outputs allow any input size (dense heads)."""
    if (meta.layout or "dense") != "dense" or meta.fit.mode != "letterbox" or meta.batch is not None:
        return meta
    return replace(meta, fit=replace(meta.fit, mode="rect", stride=max(meta.stride or 32, 32)))  # (YOLO nets take /32)


def shape_meta(meta: EngineMeta, input_hw: tuple[int, int]) -> EngineMeta:
    """The fixed-size ``meta`` of one input shape of a "rect" fit: the engine built for frames
    of that shape (a letterbox into exactly that shape is the rect input of such a frame)."""
    return replace(meta, fit=Fit(tuple(input_hw)))


def _ultralytics_fit(props: dict[str, str], input_hw: tuple[int, int] | None, layout: str | None, stride: int) -> Fit:
    if input_hw is not None:
        return Fit(tuple(input_hw), "resize" if layout and layout.startswith("rtdetr") else "letterbox")
    try:
        size = ast.literal_eval(props.get("imgsz", "[640, 640]"))
        size = [size, size] if isinstance(size, int) else list(size)
        if len(size) != 2 or not all(type(v) is int and 32 <= v <= 4096 for v in size):
            raise ValueError
    except (ValueError, SyntaxError):
        raise ValueError(f"model metadata 'imgsz' is {props.get('imgsz', '')[:40]!r}: expected [H, W], each 32 to 4096") from None
    if layout and layout.startswith("rtdetr"):
        return Fit(tuple(size), "resize")
    return Fit(tuple(size), "rect", stride=max(stride, 32))  # (dynamic graph)


def _int_prop(props: dict[str, str], key: str, default: int) -> int:
    text = props.get(key, str(default))
    if not text.strip().isdigit() or not 0 < int(text) <= 4096:
        raise ValueError(f"model metadata '{key}' is {text[:40]!r}: expected a whole number from 1 to 4096")
    return int(text)


def meta_from_ultralytics(props: dict[str, str], input_hw: tuple[int, int] | None, outputs: dict[str, list]) -> EngineMeta:
    """Engine metadata from an Ultralytics ONNX export's metadata_props (names, task, head, end2end, imgsz) and its output
    shapes. input_hw None: the graph takes any size (``dynamic=True`` export): frames are fitted ``rect``, up to imgsz."""
    names = parse_names(props["names"])
    task = props.get("task", "segment" if "output1" in outputs else "detect")
    end2end = {"True": True, "False": False}.get(props.get("end2end", ""))
    layout = layout_of(list(outputs.get("output0") or ()), len(names), task == "segment", props.get("head"), end2end)
    return EngineMeta(
        family="yolo", task=task, names=tuple(names), stride=_int_prop(props, "stride", 32), layout=layout,
        # Ultralytics' RT-DETR predictor stretches frames to the input (LetterBox scale_fill)
        fit=_ultralytics_fit(props, input_hw, layout, _int_prop(props, "stride", 32)),
        outputs=tuple(outputs),
    )


def check_outputs(meta: EngineMeta, outputs: dict[str, list]) -> str | None:
    """None when the outputs have a known layout for ``meta``'s task, else what is wrong."""
    nc = len(meta.names)
    seg = meta.task == "segment"
    if meta.task not in ("detect", "segment"):
        return f"task '{meta.task}' is not supported (detect, segment)"
    nm = PROTO_CHANNELS if seg else 0
    expected = (f"output0 [B, {4 + nc + nm}, N] (dense: 4 box + {nc} class" + (f" + {nm} mask" if seg else "") + " channels), "
                f"[B, K, {6 + nm}] (end-to-end: x1 y1 x2 y2 score class" + (f" + {nm} mask" if seg else "") + ")"
                + ("" if seg else f", [B, K, {4 + nc}] or [B, K, 6] (RT-DETR)"))
    if seg:
        expected += f", and output1 [B, {nm}, H/4, W/4]"
    layout = meta.layout or "dense"  # engines built before layouts were recorded are dense
    out0 = list(outputs.get("output0") or ())
    axis, size = {"dense": (1, 4 + nc + nm), "end2end": (2, 6 + nm), "rtdetr": (2, 4 + nc), "rtdetr-topk": (2, 6)}.get(layout, (0, -1))
    if len(out0) != 3 or size < 0 or (isinstance(out0[axis], int) and out0[axis] != size):
        return f"expected {expected}, found {outputs}"
    if seg and (len(outputs.get("output1") or ()) != 4):
        return f"expected {expected}, found {outputs}"
    return None


def decoder(meta: EngineMeta, settings: DecodeSettings) -> DenseDecoder | NmsFreeDecoder:
    layout = meta.layout or "dense"
    if layout == "dense":
        return DenseDecoder(len(meta.names), settings)
    return NmsFreeDecoder(len(meta.names), settings, layout, meta.task == "segment")


def checkpoint_graph(path: Path, imgsz: int | tuple[int, int] | None, trust: bool):
    """A YOLO-layout .pt checkpoint -> Network (torch module + metadata): rtpipe's own networks
    (``pipeline.models.rtnet``, weights only) or an Ultralytics checkpoint (needs ``ultralytics``).

    Ultralytics checkpoints pickle the model's classes, which ``torch.load(weights_only=True)``
    refuses; only with ``trust`` are they unpickled (that runs code from the file).
    """
    import torch

    from pipeline.models import rtnet
    from pipeline.models.checkpoint_load import load_weights_only, require_safe_torch
    from pipeline.models.network import Network

    require_safe_torch()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the refusal below says what matters
            ckpt = load_weights_only(path)
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
        return Network(rtnet.meta(net), str(path), module=net, source=path)
    model = ckpt.get("ema") or ckpt.get("model") if isinstance(ckpt, dict) else None
    if model is None or not hasattr(model, "model"):
        raise ValueError(
            f"checkpoint '{path}' is not an Ultralytics model checkpoint (no 'model' module inside); "
            "for a torchvision state_dict use --model torchvision:<arch> --weights FILE"
        )
    model = model.float().eval()
    head = model.model[-1]
    rtdetr = type(head).__name__ == "RTDETRDecoder"
    end2end = getattr(head, "one2one_cv2", None) is not None  # YOLO26: run its NMS-free one-to-one head
    if end2end:
        head.end2end = True  # before fusing, which drops the branch not chosen
    task = "segment" if hasattr(head, "proto") else "detect"
    if hasattr(model, "fuse"):
        model = model.fuse(verbose=False) if "verbose" in model.fuse.__code__.co_varnames else model.fuse()
    head = model.model[-1]
    head.export, head.format, head.dynamic = True, "onnx", True  # (dynamic: anchors follow the input size, for rect inputs)
    names = model.names if isinstance(model.names, (list, tuple)) else [model.names[k] for k in sorted(model.names)]
    size = imgsz or int((ckpt.get("train_args") or {}).get("imgsz", 640))
    hw = (size, size) if isinstance(size, int) else tuple(size)
    layout = "rtdetr-topk" if rtdetr else "end2end" if end2end else "dense"
    meta = EngineMeta(
        family="yolo", task=task, names=tuple(names), stride=int(max(model.stride)), layout=layout,
        fit=Fit(hw, "resize" if rtdetr else "letterbox"),
        outputs=("output0", "output1") if task == "segment" else ("output0",),
    )
    return Network(meta, str(path), module=_YoloGraph(model), source=path)


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
