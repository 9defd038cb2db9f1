"""Semantic segmentation accuracy of a run's class maps (``rtpipe run --json`` with a semantic
model) against per-pixel ground truth: mean IoU, per-class IoU and pixel accuracy.

Ground truth: a folder (``rtpipe demo`` writes ``ground_truth_semantic/``) with ``classes.json``
(``{"classes": [name, ...]}``, index = the id in the pictures) and one single-channel PNG per
frame, ``NNNNNN.png`` named by the frame's index (6 digits, from 0). Frames are matched by the
JSONL line's ``index``, classes by name; a predicted class the ground truth does not know counts
as wrong wherever it is. Only frames present in the JSONL are scored. IoU per ground-truth class
= TP / (TP + FP + FN) over all scored pixels; mIoU is their mean over the classes that occur
(in the ground truth or the predictions).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from pipeline.evaluate import EvalError, _load_predictions
from pipeline.ops.masks import rle_decode
from pipeline.text import safe


def _classes(gt_dir: Path) -> list[str]:
    path = gt_dir / "classes.json"
    try:
        names = json.loads(path.read_text(encoding="utf-8"))["classes"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise EvalError(f"semantic ground truth '{gt_dir}' needs classes.json with {{\"classes\": [name, ...]}}") from None
    if not isinstance(names, list) or not names or len(names) > 255 or not all(isinstance(n, str) for n in names):
        raise EvalError(f"'{path}': 'classes' must be a list of 1 to 255 names")
    return names


def predicted_map(record: dict, gt_ids: dict[str, int], unknown: int) -> np.ndarray:
    """A JSONL record's class map as ground-truth ids (``unknown`` for classes the truth lacks)."""
    cmap = record["class_map"]
    h, w = cmap["size"]
    out = np.full((h, w), unknown, np.uint8)
    for c in cmap["classes"]:
        out[rle_decode(c["rle"])] = gt_ids.get(c["class_name"], unknown)
    return out


def evaluate_semantic(predictions: str | Path, ground_truth: str | Path) -> dict:
    pred_path, gt_dir = Path(predictions), Path(ground_truth)
    names = _classes(gt_dir)
    records = [r for r in _load_predictions(pred_path) if "class_map" in r]
    if not records:
        raise EvalError(f"'{pred_path}' has no class maps: run a semantic segmentation model with --json")
    k = len(names)
    gt_ids = {n: i for i, n in enumerate(names)}
    conf = np.zeros((k, k + 1), np.int64)  # truth x prediction; the last column: classes the truth lacks
    for rec in records:
        png = gt_dir / f"{int(rec['index']):06d}.png"
        truth = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        if truth is None or truth.ndim != 2:
            raise EvalError(f"frame {rec['index']}: no single-channel ground truth picture '{png}'")
        pred = predicted_map(rec, gt_ids, k)
        if pred.shape != truth.shape:
            raise EvalError(f"frame {rec['index']}: the class map is {pred.shape[1]}x{pred.shape[0]}, "
                            f"the ground truth {truth.shape[1]}x{truth.shape[0]}")
        if truth.max() >= k:
            raise EvalError(f"'{png}' holds class id {int(truth.max())}; classes.json names {k}")
        conf += np.bincount(truth.ravel().astype(np.int64) * (k + 1) + pred.ravel(), minlength=k * (k + 1)).reshape(k, k + 1)
    tp = np.diag(conf[:, :k])
    union = conf.sum(1) + conf[:, :k].sum(0) - tp
    per_class = {n: (float(tp[i] / union[i]) if union[i] else None) for i, n in enumerate(names)}
    ious = [v for v in per_class.values() if v is not None]
    return {"frames": len(records), "pixels": int(conf.sum()), "pixel_accuracy": float(tp.sum() / conf.sum()),
            "miou": float(np.mean(ious)), "per_class_iou": per_class}


def render_table(result: dict):
    from rich.table import Table

    table = Table(title=f"semantic accuracy: {result['frames']} frames, mIoU {result['miou']:.3f}, "
                        f"pixel accuracy {result['pixel_accuracy']:.3f}", title_justify="left")
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, iou in result["per_class_iou"].items():
        table.add_row(safe(name), "-" if iou is None else f"{iou:.3f}")
    return table
