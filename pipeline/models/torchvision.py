"""torchvision detection zoo: build the module, wrap it for export, decode its raw outputs.

- One-stage (SSD, SSDlite, RetinaNet, FCOS): the graph is normalisation + backbone + heads at a
  fixed input size, with raw per-anchor outputs. Anchors, box decoding, score filtering, NMS
  and scaling to frame pixels are rtpipe's (numpy), so one exported graph serves every backend.
- Two-stage (Faster R-CNN, Mask R-CNN): the graph holds the whole network, RPN and RoI heads
  with their own NMS, and pads its detections to a fixed count; rtpipe filters, scales them and
  pastes the masks. The score threshold, NMS IoU and detection count are fixed when the graph
  is built (``baked`` in the metadata).

torch and torchvision are imported only by the functions that need them: decoding an
exported graph works without them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.models.decoder import DecodeSettings
from pipeline.ops import batched_nms, decode_deltas, decode_ltrb, default_boxes, grid_anchors, nms, paste_masks
from pipeline.types import AnchorLevel, Detections, EngineMeta, Fit, FitTransform

ARCHS = {
    "ssdlite320_mobilenet_v3_large": "ssd",
    "ssd300_vgg16": "ssd",
    "retinanet_resnet50_fpn": "retinanet",
    "retinanet_resnet50_fpn_v2": "retinanet",
    "fcos_resnet50_fpn": "fcos",
    "fasterrcnn_resnet50_fpn": "rcnn",
    "fasterrcnn_resnet50_fpn_v2": "rcnn",
    "fasterrcnn_mobilenet_v3_large_fpn": "rcnn",
    "fasterrcnn_mobilenet_v3_large_320_fpn": "rcnn",
    "maskrcnn_resnet50_fpn": "rcnn",
    "maskrcnn_resnet50_fpn_v2": "rcnn",
}
OUTPUTS = {
    "ssd": ("cls_logits", "bbox_regression"),
    "retinanet": ("cls_logits", "bbox_regression"),
    "fcos": ("cls_logits", "bbox_regression", "bbox_ctrness"),
    "rcnn": ("boxes", "scores", "labels"),
}
COCO_NAMES_FILE = Path(__file__).parent / "assets" / "coco91.txt"


def coco_names() -> list[str]:
    """torchvision's 91 COCO category names, index = label ('__background__' and 'N/A' included)."""
    return COCO_NAMES_FILE.read_text().splitlines()


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        from pipeline.models.classify import ARCHS as CLASSIFY
        from pipeline.models.semantic import ARCHS as SEMANTIC

        raise ValueError(f"unknown torchvision architecture '{arch}': choose one of {', '.join([*ARCHS, *SEMANTIC, *CLASSIFY])}")
    return ARCHS[arch]


# ---------------------------------------------------------------------------- building


def build(arch: str, weights: str | Path | None = None, imgsz: int | None = None, settings: DecodeSettings | None = None, seed: int = 0):
    """The torchvision model in eval mode.

    weights: a local state_dict file (``torch.load(weights_only=True)``; a training checkpoint
    with a ``model`` entry works too), ``"DEFAULT"`` for torchvision's pretrained weights (the
    weights API downloads them: needs internet), or None for random init with ``seed``.
    imgsz: the short side frames are resized to (torchvision's ``min_size``; ``max_size``
    follows in proportion); not for SSD, whose input size is fixed. settings: for two-stage
    models, the score threshold, NMS IoU and detection count built into the graph.
    """
    import torch
    from torchvision.models import detection

    kind = check_arch(arch)
    if imgsz is not None and kind == "ssd":
        raise ValueError(f"{arch} has a fixed input size; drop imgsz")
    if isinstance(imgsz, tuple):
        raise ValueError(f"{arch} takes one size, the short side frames are resized to (torchvision's min_size): give --imgsz N")
    kwargs: dict = {}
    if kind == "rcnn" and settings is not None:
        kwargs.update(box_score_thresh=settings.conf, box_nms_thresh=settings.iou, box_detections_per_img=settings.max_det)
    fn = getattr(detection, arch)
    if isinstance(weights, str) and weights.upper() == "DEFAULT":
        model = fn(weights="DEFAULT", **kwargs).eval()
    else:
        torch.manual_seed(seed)
        model = fn(weights=None, weights_backbone=None, **kwargs).eval()
        if weights is not None:
            load_state_dict(model, weights, arch)
    if imgsz is not None:  # the transform only reads these two: set them rather than build twice
        t = model.transform
        t.min_size, t.max_size = (int(imgsz),), int(math.ceil(imgsz * t.max_size / t.min_size[-1]))
    return model


def load_state_dict(model, path: str | Path, arch: str) -> None:
    """Load a state_dict file into ``model``; a file that does not fit says how it differs."""

    from pipeline.models.checkpoint_load import load_weights_only, require_safe_torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file '{path}' not found: give a state_dict saved from torchvision's {arch}")
    require_safe_torch()
    try:
        state = load_weights_only(path)
    except Exception as exc:
        raise ValueError(
            f"weights file '{path}' is not a plain state_dict ({exc.__class__.__name__}): save one with torch.save(model.state_dict(), f)"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"weights file '{path}' holds a {type(state).__name__}, not a state_dict")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(getattr(state[k], "shape", ()))]
    if missing or unexpected or shapes:
        parts = [
            f"{len(v)} {what} (e.g. {v[0]})"
            for what, v in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
            if v
        ]
        raise ValueError(
            f"weights file '{path}' does not fit torchvision:{arch}: {', '.join(parts)}; expected the state_dict of {arch}"
        )
    model.load_state_dict(state)


def describe(model, arch: str) -> EngineMeta:
    """The engine metadata: everything needed to preprocess and decode the graph."""
    import torch

    kind = check_arch(arch)
    t = model.transform
    if t.fixed_size is not None:
        fit = Fit((int(t.fixed_size[1]), int(t.fixed_size[0])), "stretch", pad_rgb=tuple(t.image_mean))
    else:
        min_size, max_size = int(t.min_size[-1]), int(t.max_size)
        input_hw = (_ceil(min_size, 32), _ceil(max_size, 32))
        fit = Fit(input_hw, "torchvision", min_size, max_size, tuple(float(m) for m in t.image_mean))
    meta = {
        "family": "torchvision",
        "arch": arch,
        "kind": kind,
        "names": coco_names(),
        "task": "segment" if kind == "rcnn" and model.roi_heads.has_mask() else "detect",
        "fit": fit,
        "mean": list(t.image_mean),
        "std": list(t.image_std),
        "outputs": list(OUTPUTS[kind]) + (["masks"] if kind == "rcnn" and model.roi_heads.has_mask() else []),
    }
    if kind == "rcnn":
        rh = model.roi_heads
        meta["batch"] = 1
        meta["baked"] = {"conf": rh.score_thresh, "iou": rh.nms_thresh, "max_det": rh.detections_per_img}
        return EngineMeta.from_dict(meta, f"torchvision:{arch}")
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, *fit.input_hw))
    grids = [tuple(int(s) for s in f.shape[-2:]) for f in (feats.values() if isinstance(feats, dict) else [feats])]
    ag = model.anchor_generator
    ih, iw = fit.input_hw
    if kind == "ssd":
        steps = [(iw / s, ih / s) for s in ag.steps] if ag.steps is not None else [(g[1], g[0]) for g in grids]
        whs = [(p.clamp(0, 1) if ag.clip else p).tolist() for p in ag._wh_pairs]
        meta["anchors"] = {"type": "default", "levels": [{"grid": g, "steps": s, "wh": wh} for g, s, wh in zip(grids, steps, whs)]}
    else:
        cells = (
            [c.tolist() for c in ag.cell_anchors]
            if ag.cell_anchors
            else [ag.generate_anchors(s, a).tolist() for s, a in zip(ag.sizes, ag.aspect_ratios)]
        )
        levels = [{"grid": g, "stride": (ih // g[0], iw // g[1]), "cells": c} for g, c in zip(grids, cells)]
        meta["anchors"] = {"type": "grid", "levels": levels}
    topk = int(model.topk_candidates)
    if kind == "fcos":
        meta["decode"] = {"score": "sigmoid_ctrness", "coder": "ltrb", "topk": topk}
    else:  # SSD: softmax over classes with a background class; RetinaNet: a sigmoid per class
        coder = model.box_coder
        meta["decode"] = {"score": "softmax" if kind == "ssd" else "sigmoid", "coder": "deltas", "topk": topk,
                          "weights": list(coder.weights), "clip": coder.bbox_xform_clip}
    return EngineMeta.from_dict(meta, f"torchvision:{arch}")


def rect_meta(meta: EngineMeta) -> EngineMeta:
    """``meta`` with inputs fitted per frame as torchvision's own transform does: resized, then
    padded to a multiple of 32 -- by the host for the one-stage FPN models (RetinaNet, FCOS);
    inside the graph for the two-stage models (stride 1: the input is the resized frame, whose
    size the RPN and RoI heads clip boxes to, as torchvision's do). Not SSD (a fixed stretch)."""
    if meta.fit.mode != "torchvision":
        return meta
    if meta.kind == "rcnn":
        return replace(meta, fit=replace(meta.fit, stride=1))
    if meta.anchors is None or meta.anchors.type != "grid":
        return meta
    return replace(meta, fit=replace(meta.fit, stride=32))


def shape_meta(meta: EngineMeta, input_hw: tuple[int, int]) -> EngineMeta:
    """The fixed-size ``meta`` of one input shape of a per-frame fit (``rect_meta``): the engine
    built for frames of that shape, its anchors laid out for that size."""
    anchors = meta.anchors
    if anchors is not None and anchors.type == "grid":
        anchors = replace(anchors, levels=tuple(level_at(lv, input_hw) for lv in anchors.levels))
    return replace(meta, fit=replace(meta.fit, input_hw=tuple(input_hw), stride=0), anchors=anchors)


def level_at(level: AnchorLevel, input_hw: tuple[int, int]) -> AnchorLevel:
    """A grid level's anchors for an input of another size: the grid is ceil(size / the level's
    nominal stride), as the backbone's stride-2 convolutions give, and the anchor step
    size // grid, as torchvision's AnchorGenerator takes it."""
    ih, iw = input_hw
    nominal = [2 ** round(math.log2(s)) for s in level.stride]
    grid = (-(-ih // nominal[0]), -(-iw // nominal[1]))
    return replace(level, grid=grid, stride=(ih // grid[0], iw // grid[1]))


def _ceil(v: int, m: int) -> int:
    return int(math.ceil(v / m) * m)


def graph(model, meta: EngineMeta):
    """The exportable ``nn.Module``: [0, 1] RGB (B, 3, H, W) in, the raw outputs of ``meta``."""
    import torch
    from torchvision.models.detection.image_list import ImageList

    from pipeline.models.normalised import Normalised

    class Exported(Normalised):
        def forward(self, images):
            x = self.normalise(images)
            if meta.kind == "rcnn":
                return self._two_stage(x)
            out = self.model.head(list(self.model.backbone(x).values()))
            return tuple(out[k] for k in meta.outputs)

        def _two_stage(self, x):
            # torchvision's batch of one: the resized image (whose size the RPN and RoI heads clip
            # boxes to) zero-padded to a multiple of 32. Sizes stay tensors: traced, not baked.
            h, w = x.shape[-2], x.shape[-1]
            padded = torch.nn.functional.pad(x, (0, (32 - w % 32) % 32, 0, (32 - h % 32) % 32))
            feats = self.model.backbone(padded)
            images = ImageList(padded, [(h, w)])
            proposals, _ = self.model.rpn(images, feats)
            dets, _ = self.model.roi_heads(feats, proposals, images.image_sizes)
            d = dets[0]
            pad = int(meta.baked.max_det) - d["boxes"].shape[0]
            out = [
                torch.nn.functional.pad(d["boxes"], (0, 0, 0, pad)),
                torch.nn.functional.pad(d["scores"], (0, pad)),
                torch.nn.functional.pad(d["labels"], (0, pad)),
            ]
            if "masks" in meta.outputs:
                out.append(torch.nn.functional.pad(d["masks"], (0, 0, 0, 0, 0, 0, 0, pad)))
            return tuple(o[None] for o in out)

    return Exported(model, meta.mean, meta.std).eval()


# ---------------------------------------------------------------------------- decoding


def decoder(meta: EngineMeta, settings: DecodeSettings) -> OneStageDecoder | TwoStageDecoder:
    return TwoStageDecoder(meta, settings) if meta.kind == "rcnn" else OneStageDecoder(meta, settings)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1 / (1 + np.exp(-x.astype(np.float32)))).astype(np.float32)


def _logit(p: float) -> float:
    return -math.inf if p <= 0 else math.inf if p >= 1 else math.log(p / (1 - p))


class OneStageDecoder:
    """Raw per-anchor outputs -> Detections, as torchvision's ``postprocess_detections`` does.

    Per level (RetinaNet, FCOS) or per class (SSD): scores above ``conf``, the ``topk`` best,
    boxes decoded from their anchors and clipped to the resized frame; then class-aware NMS over
    everything and the ``max_det`` best.
    """

    def __init__(self, meta: EngineMeta, settings: DecodeSettings):
        self.s = settings
        self.coding = meta.decode
        ih, iw = meta.fit.input_hw
        a = self.meta_anchors = meta.anchors
        if a.type == "grid":
            parts = [grid_anchors(lv.grid, lv.stride, np.asarray(lv.cells)) for lv in a.levels]
        else:
            parts = [default_boxes(lv.grid, lv.steps, np.asarray(lv.wh), (ih, iw)) for lv in a.levels]
        self.anchors = np.concatenate(parts)
        self.level_ends = np.cumsum([len(p) for p in parts])
        self._input_hw = (ih, iw)
        self._by_shape = {(ih, iw): (self.anchors, self.level_ends)}

    def anchors_for(self, input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The anchors (and level ends) of an input of another size than the metadata's (a
        fitted torchvision input; see ``level_at``)."""
        if input_hw not in self._by_shape:
            levels = [level_at(lv, input_hw) for lv in self.meta_anchors.levels]
            parts = [grid_anchors(lv.grid, lv.stride, np.asarray(lv.cells)) for lv in levels]
            self._by_shape[input_hw] = (np.concatenate(parts), np.cumsum([len(p) for p in parts]))
        return self._by_shape[input_hw]

    def on_device(self) -> None:
        return None  # decoded on the host

    def __call__(self, outputs: dict[str, np.ndarray], transforms: list[FitTransform]) -> list[Detections]:
        n = outputs["cls_logits"].shape[1]
        anchors, ends = self.anchors_for(tuple(transforms[0].input_hw)) if transforms else (self.anchors, self.level_ends)
        if n != len(anchors):
            raise ValueError(f"the graph gives {n} anchors' outputs, its metadata describes {len(anchors)}: rebuild the engine")
        return [self._one({k: v[i] for k, v in outputs.items()}, m, anchors, ends) for i, m in enumerate(transforms)]

    def _one(self, out: dict[str, np.ndarray], transform: FitTransform, anchors: np.ndarray, ends: np.ndarray) -> Detections:
        s = self.s
        t = transform
        bounds = np.array([t.frame_hw[1] * t.scale_x + t.pad_x, t.frame_hw[0] * t.scale_y + t.pad_y] * 2, np.float32)
        if self.coding.score == "softmax":
            boxes, scores, labels = self._per_class(out, bounds, anchors)
        else:
            boxes, scores, labels = self._per_level(out, bounds, anchors, ends)
        if s.classes is not None:
            keep = np.isin(labels, s.classes)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = nms(boxes, scores, s.iou, s.max_det) if s.agnostic else batched_nms(boxes, scores, labels, s.iou, s.max_det)
        return Detections(transform.to_frame(boxes[keep]), scores[keep], labels[keep].astype(np.int32))

    def _decode(self, regression: np.ndarray, anchors: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        coding = self.coding
        if coding.coder == "ltrb":
            boxes = decode_ltrb(regression, anchors)
        else:
            boxes = decode_deltas(regression, anchors, coding.weights, coding.clip)
        return np.clip(boxes, 0, bounds)

    def _per_level(self, out: dict[str, np.ndarray], bounds: np.ndarray, anchors: np.ndarray, ends: np.ndarray):
        cls, reg = out["cls_logits"], out["bbox_regression"]
        ctr = out.get("bbox_ctrness")
        conf, topk = self.s.conf, self.coding.topk
        # sigmoid(l) > conf <=> l > logit(conf); with centreness, sigmoid(l) >= conf^2 is needed
        floor = _logit(conf * conf if ctr is not None else conf)
        boxes, scores, labels = [], [], []
        start = 0
        for end in ends:
            logits = cls[start:end]
            a_idx, c_idx = np.nonzero(logits > floor)
            score = _sigmoid(logits[a_idx, c_idx])
            if ctr is not None:
                score = np.sqrt(score * _sigmoid(ctr[start:end][a_idx, 0]))
            keep = score > conf
            a_idx, c_idx, score = a_idx[keep], c_idx[keep], score[keep]
            order = np.argsort(-score, kind="stable")[:topk]
            a_idx, c_idx, score = a_idx[order], c_idx[order], score[order]
            boxes.append(self._decode(reg[start:end][a_idx], anchors[start:end][a_idx], bounds))
            scores.append(score)
            labels.append(c_idx)
            start = end
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)

    def _per_class(self, out: dict[str, np.ndarray], bounds: np.ndarray, anchors: np.ndarray):
        logits = out["cls_logits"].astype(np.float32, copy=False)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
        a_idx, c_idx = np.nonzero(probs[:, 1:] > self.s.conf)  # class 0 is the background
        c_idx = c_idx + 1
        score = probs[a_idx, c_idx]
        order = np.lexsort((-score, c_idx))  # by class, best first within a class
        a_idx, c_idx, score = a_idx[order], c_idx[order], score[order]
        first = np.searchsorted(c_idx, c_idx, side="left")
        keep = (np.arange(len(c_idx)) - first) < self.coding.topk
        a_idx, c_idx, score = a_idx[keep], c_idx[keep], score[keep]
        boxes = self._decode(out["bbox_regression"][a_idx], anchors[a_idx], bounds)
        return boxes, score.astype(np.float32), c_idx


class TwoStageDecoder:
    """Padded two-stage detections -> Detections: score and class filter, scaling, mask paste."""

    def __init__(self, meta: EngineMeta, settings: DecodeSettings):
        self.s = settings

    def on_device(self) -> None:
        return None  # decoded on the host

    def __call__(self, outputs: dict[str, np.ndarray], transforms: list[FitTransform]) -> list[Detections]:
        return [self._one({k: v[i] for k, v in outputs.items()}, m) for i, m in enumerate(transforms)]

    def _one(self, out: dict[str, np.ndarray], transform: FitTransform) -> Detections:
        s = self.s
        scores, labels = out["scores"].astype(np.float32), out["labels"].astype(np.int64)
        keep = (scores > 0) & (scores > s.conf)
        if s.classes is not None:
            keep &= np.isin(labels, s.classes)
        idx = np.flatnonzero(keep)[: s.max_det]
        xyxy = transform.to_frame(out["boxes"][idx])
        mask = None
        if "masks" in out:
            mask = paste_masks(out["masks"][idx, 0], xyxy, transform.frame_hw)
        return Detections(xyxy, scores[idx], labels[idx].astype(np.int32), mask)


def check_outputs(meta: EngineMeta, outputs: dict[str, list]) -> str | None:
    """None when the graph's outputs are the ones ``meta`` describes, else what is wrong."""
    missing = [n for n in meta.outputs if n not in outputs]
    if missing:
        return f"expected outputs {list(meta.outputs)} for torchvision:{meta.arch}, the graph has {list(outputs)}"
    return None
