"""rtpipe eval: COCO mAP of a detections JSONL against COCO ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.demo.clip import write_clip
from pipeline.demo.scenes import CLASSES
from pipeline.evaluate import EvalError, evaluate
from tests.test_cli import rtpipe


@pytest.fixture(scope="module")
def gt(tmp_path_factory):
    out = tmp_path_factory.mktemp("gt")
    _, gt_path = write_clip(out, seed=3, frames=12, size=(480, 270))
    return gt_path


def predictions_from(gt_path, path, shift: float = 0.0, keep=lambda k: True, masks: bool = True):
    """The ground truth written back as detections (optionally shifted right by ``shift`` box widths)."""
    gt = json.loads(gt_path.read_text())
    lines = []
    for im in gt["images"]:
        dets = []
        for k, a in enumerate(x for x in gt["annotations"] if x["image_id"] == im["id"] and not x["iscrowd"]):
            if not keep(k):
                continue
            x, y, w, h = a["bbox"]
            d = {"xyxy": [x + shift * w, y, x + w + shift * w, y + h], "score": 0.9, "class_id": a["category_id"] - 1,
                 "class_name": CLASSES[a["category_id"] - 1]}
            if masks:
                d["mask"] = a["segmentation"]
            dets.append(d)
        lines.append(json.dumps({"index": im["frame_index"], "pts": 0, "source_id": 0, "detections": dets}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ground_truth_as_predictions_scores_one(gt, tmp_path):
    r = evaluate(predictions_from(gt, tmp_path / "p.jsonl"), gt)
    assert r["box"]["mAP"] == pytest.approx(1.0) and r["mask"]["mAP"] == pytest.approx(1.0)
    assert r["frames"] == 12 and r["frames_not_scored"] == 0 and r["detections"] == r["objects"] > 0
    assert set(r["box"]["per_class"]) == set(CLASSES)


def test_worse_predictions_score_lower(gt, tmp_path):
    shifted = evaluate(predictions_from(gt, tmp_path / "s.jsonl", shift=0.15, masks=False), gt)
    assert "mask" not in shifted  # no masks in the detections: box metrics only
    assert 0 < shifted["box"]["mAP"] < 0.8 and shifted["box"]["mAP50"] == pytest.approx(1.0)
    half = evaluate(predictions_from(gt, tmp_path / "h.jsonl", keep=lambda k: k % 2 == 0), gt)
    assert 0.2 < half["box"]["mAP"] < 0.8 and half["mask"]["mAP"] < 0.8


def test_only_frames_in_the_jsonl_are_scored(gt, tmp_path):
    p = predictions_from(gt, tmp_path / "p.jsonl")
    p.write_text("\n".join(p.read_text().splitlines()[:5]) + "\n")
    r = evaluate(p, gt)
    assert r["frames"] == 5 and r["frames_not_scored"] == 7 and r["box"]["mAP"] == pytest.approx(1.0)


def test_mismatched_files_are_refused(gt, tmp_path):
    p = predictions_from(gt, tmp_path / "p.jsonl")
    lines = p.read_text().splitlines()
    bad_frame = tmp_path / "f.jsonl"
    bad_frame.write_text(lines[0].replace('"index": 0', '"index": 500') + "\n")
    with pytest.raises(EvalError, match="frame 500"):
        evaluate(bad_frame, gt)
    bad_class = tmp_path / "c.jsonl"
    bad_class.write_text(lines[0].replace('"class_name": "car"', '"class_name": "bus"') + "\n")
    with pytest.raises(EvalError, match="class 'bus'"):
        evaluate(bad_class, gt)
    with pytest.raises(EvalError, match="is not JSON"):
        evaluate(p, p)
    (tmp_path / "x.json").write_text('{"images": []}')
    with pytest.raises(EvalError, match="not COCO JSON"):
        evaluate(p, tmp_path / "x.json")


def test_eval_command(gt, tmp_path):
    p = predictions_from(gt, tmp_path / "p.jsonl")
    r = rtpipe("eval", p, gt, "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert "mask mAP@.5:.95" in r.stdout and json.loads((tmp_path / "r.json").read_text())["box"]["mAP"] == pytest.approx(1.0)
    r = rtpipe("eval", tmp_path / "missing.jsonl", gt)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "not found" in r.stderr


def test_line_counts_need_both_files_and_real_events(tmp_path):
    from pipeline.evaluate import EvalError, evaluate

    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "frame_index": 0}], "annotations": [], "categories": [{"id": 1, "name": "car"}]}))
    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"index": 0, "detections": []}) + "\n")
    crossings = tmp_path / "c.json"
    crossings.write_text(json.dumps({"lines": [{"name": "g"}], "counts": {"g": {"line_in": {"all": 0}, "line_out": {"all": 0}}}}))
    events = tmp_path / "e.jsonl"
    events.write_text('{"frame": 0, "detections": []}\n')
    with pytest.raises(EvalError, match="need both"):
        evaluate(pred, gt, events=events)
    with pytest.raises(EvalError, match="line 1 is not an rtpipe event"):
        evaluate(pred, gt, events, crossings)
    with pytest.raises(EvalError, match="is not a crossings file as rtpipe demo writes: it needs 'lines', 'counts'"):
        evaluate(pred, gt, events, gt)
    events.write_text("")
    assert evaluate(pred, gt, events, crossings)["lines"]["g"]["accuracy"] == 1.0


def test_line_counts_take_the_detections_source_and_known_line_names(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "frame_index": 0}], "annotations": [], "categories": [{"id": 1, "name": "car"}]}))
    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"index": 0, "source_id": 1, "detections": []}) + "\n")
    crossings = tmp_path / "c.json"
    crossings.write_text(json.dumps({"lines": [{"name": "gate"}],
                                     "counts": {"gate": {"line_in": {"all": 1, "car": 1}, "line_out": {"all": 0}}}}))

    def event(source, name):
        return json.dumps({"frame": 0, "pts": 0.0, "source_id": source, "tracker_id": 1, "class_id": 0, "class_name": "car",
                           "event": "line_in", "name": name})

    events = tmp_path / "e.jsonl"
    events.write_text(event(1, "gate") + "\n" + event(0, "gate") + "\n" + event(0, "gate") + "\n")
    assert evaluate(pred, gt, events, crossings)["lines"]["gate"]["counted"] == {"line_in": 1, "line_out": 0}  # source 1 only
    events.write_text(event(1, "line1") + "\n")
    with pytest.raises(EvalError, match="count lines line1, and .* has the true crossings of gate"):
        evaluate(pred, gt, events, crossings)


def _picture_set(root, seeds=(3, 8, 21, 40)):
    """A small COCO picture set: demo scenes saved as PNGs in shuffled order, with image ids that
    are not sequential and file names relative to the set's root (as COCO files have them)."""
    import cv2

    from pipeline.demo.clip import coco_annotations
    from pipeline.demo.scenes import Scene

    (root / "val").mkdir(parents=True)
    images, annotations = [], []
    for k, seed in enumerate(seeds):
        rendered = list(Scene(seed, 640, 360).frames(12))[-1]  # the twelfth frame: traffic in view
        image_id, name = 1000 - 37 * k, f"val/img_{seed:04d}.png"
        cv2.imwrite(str(root / name), rendered.image)
        images.append({"id": image_id, "file_name": name, "width": 640, "height": 360})
        annotations += coco_annotations(rendered, image_id, len(annotations) + 1)
    for a in annotations:
        a.pop("track_id")
    gt = {"images": images[::-1], "annotations": annotations, "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}
    (root / "gt.json").write_text(json.dumps(gt))
    return root / "val", root / "gt.json"


def test_a_picture_folder_is_scored_by_file_name_not_by_order(tmp_path):
    folder, gt = _picture_set(tmp_path)
    js, out = tmp_path / "p.jsonl", tmp_path / "annotated"
    r = rtpipe("run", folder, "--model", "demo", "--conf", "0.001", "--json", js, "--save", out)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in js.read_text().splitlines()]
    assert [Path(x["path"]).name for x in lines] == sorted(p.name for p in folder.iterdir())  # each line says its picture
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in folder.iterdir())  # annotated, named as the inputs
    result = evaluate(js, gt)
    assert result["frames"] == 4 and result["frames_not_scored"] == 0 and result["box"]["mAP50"] > 0.5, result
    shuffled = [dict(x, index=i) for i, x in enumerate(reversed(lines))]  # order and index do not matter, the names do
    js2 = tmp_path / "p2.jsonl"
    js2.write_text("".join(json.dumps(x) + "\n" for x in shuffled))
    assert evaluate(js2, gt)["box"]["mAP50"] == pytest.approx(result["box"]["mAP50"])
    wrong = tmp_path / "p3.jsonl"
    wrong.write_text(json.dumps(dict(lines[0], path="/elsewhere/other.png")) + "\n")
    with pytest.raises(EvalError, match="matches none of the images"):
        evaluate(wrong, gt)
