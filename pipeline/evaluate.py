"""COCO accuracy of a detections JSONL (``rtpipe run --json``) against COCO ground truth, and
tracking accuracy when both sides carry ids (``pipeline.tracking.accuracy``).

The metrics are pycocotools' COCOeval, box and (where the detections carry masks) mask:
mAP@0.5:0.95, mAP@0.5, mAP@0.75 and per-class mAP@0.5:0.95. Frames are matched by the JSONL
line's ``index`` and the ground-truth image's ``frame_index`` (or, without it, ``id - 1``);
classes by name. Only frames present in the JSONL are scored.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from pipeline.text import safe
from pipeline.types import InputError


class EvalError(InputError):
    """Files that cannot be scored against each other; the message says which and why."""


def _load_json(path: Path, what: str, keys: tuple[str, ...], kind: str) -> dict:
    """A JSON object file that must hold ``keys``; EvalError naming ``what`` it should be otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"{what} '{path}' not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalError(f"{what} '{path}' is not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(k in data for k in keys):
        raise EvalError(f"{what} '{path}' is not {kind}: it needs {', '.join(repr(k) for k in keys)}")
    return data


def _load_gt(path: Path) -> dict:
    return _load_json(path, "ground truth", ("images", "annotations", "categories"), "COCO JSON")


def _load_predictions(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EvalError(f"detections '{path}' not found") from None
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            int(rec["index"]), list(rec["detections"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise EvalError(f"detections '{path}' line {n} is not an rtpipe JSONL record (needs 'index' and 'detections')") from None
        records.append(rec)
    return records


def _load_events(path: Path) -> list[dict]:
    from pydantic import ValidationError

    from pipeline.analytics import Event

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EvalError(f"events '{path}' not found") from None
    events = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                events.append(Event.from_json(line).model_dump())
            except ValidationError:
                raise EvalError(f"events '{path}' line {n} is not an rtpipe event (see README: JSONL and event schemas)") from None
    return events


def evaluate(predictions: str | Path, ground_truth: str | Path, events: str | Path | None = None,
             crossings: str | Path | None = None) -> dict:
    """Score ``predictions`` (JSONL) against ``ground_truth`` (COCO JSON); see the module docstring.
    With tracker ids in the predictions and track ids in the ground truth: ``tracking`` (HOTA,
    MOTA, IDF1, ID switches). With ``events`` (``--events`` JSONL) and ``crossings`` (the
    demo's ``crossings.json``): ``lines``, the counts against the true crossings."""
    from pycocotools.coco import COCO

    if (events is None) != (crossings is None):
        raise EvalError("line counts need both --events (from rtpipe run) and --crossings (the demo's crossings.json)")
    pred_path, gt_path = Path(predictions), Path(ground_truth)
    gt, records = _load_gt(gt_path), _load_predictions(pred_path)
    if events is not None:
        truth = _load_json(Path(crossings), "crossings", ("lines", "counts"), "a crossings file as rtpipe demo writes")
        counted = _events_of(_load_events(Path(events)), records)
        known = [line["name"] for line in truth["lines"]]
        unknown = sorted({e["name"] for e in counted if e["event"].startswith("line")} - set(known))
        if unknown:
            raise EvalError(f"events '{events}' count lines {', '.join(unknown)}, and '{crossings}' has the true crossings of "
                            f"{', '.join(known)}: name each line as the crossings do (--line NAME=...)")
    image_of = _images_by_index(gt) if not records or "path" not in records[0] else _images_by_name(gt, records, pred_path, gt_path)
    category_of = {c["name"]: c["id"] for c in gt["categories"]}
    dets, with_masks, image_ids = [], True, []
    for rec in records:
        index = int(rec["index"])
        if index not in image_of:
            raise EvalError(f"detections '{pred_path}' have frame {index}, which '{gt_path}' does not: are they for this clip?")
        image_ids.append(image_of[index])
        for d in rec["detections"]:
            name = d.get("class_name")
            if name not in category_of:
                raise EvalError(f"class '{name}' in '{pred_path}' is not a category of '{gt_path}' ({', '.join(category_of)})")
            x1, y1, x2, y2 = d["xyxy"]
            det = {"image_id": image_of[index], "category_id": category_of[name], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": d["score"]}
            if "mask" in d:
                det["segmentation"] = d["mask"]
            else:
                with_masks = False
            dets.append(det)
    coco_gt = COCO()
    coco_gt.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
    scored = set(image_ids)
    result = {"predictions": str(pred_path), "ground_truth": str(gt_path), "frames": len(image_ids),
              "frames_not_scored": len(gt["images"]) - len(scored), "detections": len(dets),
              "objects": sum(1 for a in gt["annotations"] if a["image_id"] in scored and not a.get("iscrowd"))}
    for kind in ("bbox", "segm"):
        if kind == "segm" and not with_masks:
            continue
        result["box" if kind == "bbox" else "mask"] = _score(coco_gt, dets, kind, sorted(scored))
    from pipeline.tracking.accuracy import count_accuracy, tracking_accuracy

    result["tracking"] = tracking_accuracy(records, gt, image_of)
    if events is not None:
        result["lines"] = count_accuracy(counted, truth)
    return result


def _images_by_index(gt: dict) -> dict[int, int]:
    """Frame index -> image id, for a video's ground truth (``frame_index``, else ``id - 1``)."""
    return {int(im.get("frame_index", im["id"] - 1)): im["id"] for im in gt["images"]}


def _images_by_name(gt: dict, records: list[dict], pred_path: Path, gt_path: Path) -> dict[int, int]:
    """Frame index -> image id, for pictures (records with ``path``): the ground truth image whose
    ``file_name`` the path ends with (a relative path in the COCO file, or just the name)."""
    by_name: dict[str, list[dict]] = {}
    for im in gt["images"]:
        by_name.setdefault(Path(str(im.get("file_name", ""))).name, []).append(im)
    image_of = {}
    for rec in records:
        path = Path(str(rec.get("path", "")))
        found = [im for im in by_name.get(path.name, []) if path.as_posix().endswith(Path(str(im["file_name"])).as_posix())]
        if len(found) != 1:
            why = "none" if not found else f"{len(found)} ({', '.join(str(im['file_name']) for im in found[:3])})"
            raise EvalError(f"'{path}' in '{pred_path}' matches {why} of the images of '{gt_path}' by file name: "
                            "score the folder the ground truth describes")
        image_of[int(rec["index"])] = found[0]["id"]
    return image_of


def _events_of(events: list[dict], records: list[dict]) -> list[dict]:
    """The events of the predictions' source (an events file holds every source of a run)."""
    sources = {int(r.get("source_id", 0)) for r in records}
    if len(sources) > 1:
        raise EvalError(f"the detections hold several sources ({', '.join(map(str, sorted(sources)))}): score one source's JSONL")
    sid = sources.pop() if sources else 0
    return [e for e in events if e["source_id"] == sid]


def _score(coco_gt, dets: list[dict], kind: str, image_ids: list[int]) -> dict:
    """COCOeval of ``kind`` ("bbox" or "segm") on ``image_ids``; its printout is swallowed."""
    from pycocotools.cocoeval import COCOeval

    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    if not dets:
        return {"mAP": 0.0, "mAP50": 0.0, "mAP75": 0.0, "per_class": {n: {"mAP": 0.0, "mAP50": 0.0} for n in names.values()}}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(d) for d in dets])
        ev = COCOeval(coco_gt, coco_dt, kind)
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # (iou thresholds, recall, class) at area all, maxDets 100

    def mean(p):  # -1 marks a class with no ground truth in these frames
        return round(float(p[p > -1].mean()), 4) if (p > -1).any() else None

    per_class = {names[cid]: {"mAP": mean(precision[:, :, k]), "mAP50": mean(precision[0, :, k])}
                 for k, cid in enumerate(ev.params.catIds)}
    return {"mAP": round(float(ev.stats[0]), 4), "mAP50": round(float(ev.stats[1]), 4), "mAP75": round(float(ev.stats[2]), 4),
            "per_class": per_class}


def render_table(result: dict):
    """A rich table of the box and mask mAPs, overall and per class."""
    from rich.table import Table

    kinds = [k for k in ("box", "mask") if k in result]
    table = Table(title=f"accuracy: {result['frames']} frames, {result['objects']} objects, {result['detections']} detections",
                  title_justify="left")
    table.add_column("")
    for k in kinds:
        table.add_column(f"{k} mAP@.5:.95", justify="right")
        table.add_column(f"{k} mAP@.5", justify="right")

    def cell(v):
        return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"

    table.add_row("all", *[cell(result[k][m]) for k in kinds for m in ("mAP", "mAP50")])
    for name in result[kinds[0]]["per_class"] if kinds else ():
        table.add_row(safe(name), *[cell(result[k]["per_class"][name][m]) for k in kinds for m in ("mAP", "mAP50")])
    return table


def render_tracking(result: dict) -> list:
    """Rich tables of the tracking scores and the line counts, where the result has them."""
    from rich.table import Table

    tables = []
    if result.get("tracking"):
        t = result["tracking"]
        table = Table(title="tracking (trackers.eval, TrackEval's method)", title_justify="left")
        cols = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "FP", "FN")
        table.add_column("")
        for c in cols:
            table.add_column(c, justify="right")
        for name, row in [("all", t), *t["per_class"].items()]:
            table.add_row(safe(name), *[f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols])
        tables.append(table)
    if result.get("lines"):
        table = Table(title="line counts against the true crossings", title_justify="left")
        for c in ("line", "in (true)", "out (true)", "accuracy"):
            table.add_column(c, justify="left" if c == "line" else "right")
        for name, r in result["lines"].items():
            table.add_row(safe(name), f"{r['counted']['line_in']} ({r['true']['line_in']})",
                          f"{r['counted']['line_out']} ({r['true']['line_out']})", f"{r['accuracy']:.3f}")
        tables.append(table)
    return tables
