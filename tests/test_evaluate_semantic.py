"""rtpipe eval with per-pixel ground truth: mIoU, per-class IoU and pixel accuracy of class maps."""

import json

import cv2
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.evaluate import EvalError
from pipeline.evaluate_semantic import evaluate_semantic
from pipeline.sinks import JsonlSink
from pipeline.types import ClassMap, Detections, Frame

NAMES = ["other", "sky", "road"]


def write(tmp_path, truths, preds, pred_names=NAMES):
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "classes.json").write_text(json.dumps({"classes": NAMES}))
    for i, t in enumerate(truths):
        cv2.imwrite(str(gt / f"{i:06d}.png"), t)
    sink = JsonlSink(tmp_path / "p.jsonl", pred_names)
    for i, p in enumerate(preds):
        sink.write(Frame(np.zeros((*p.shape, 3), np.uint8), i, 0.0, 0.0), Detections.empty(class_map=ClassMap(p)), None)
    sink.close(True)
    return tmp_path / "p.jsonl", gt


def test_scores_by_hand(tmp_path):
    truth = np.zeros((10, 10), np.uint8)
    truth[:4] = 1  # sky: 40 px
    truth[6:] = 2  # road: 40 px; other: 20 px
    pred = truth.copy()
    pred[3] = 2  # 10 sky pixels called road
    pjs, gt = write(tmp_path, [truth, truth], [truth, pred])
    r = evaluate_semantic(pjs, gt)
    assert r["frames"] == 2 and r["pixels"] == 200
    assert r["pixel_accuracy"] == pytest.approx(190 / 200)
    assert r["per_class_iou"]["sky"] == pytest.approx(70 / 80)  # TP 70, FN 10
    assert r["per_class_iou"]["road"] == pytest.approx(80 / 90)  # TP 80, FP 10
    assert r["per_class_iou"]["other"] == pytest.approx(1.0)
    assert r["miou"] == pytest.approx((70 / 80 + 80 / 90 + 1) / 3)
    assert main(["eval", str(pjs), str(gt)]) == 0


def test_classes_are_matched_by_name_and_unknown_ones_are_wrong(tmp_path):
    truth = np.array([[0, 1], [2, 2]], np.uint8)
    # the model numbers its classes otherwise, and has one the truth lacks ("car", id 3)
    pred = np.array([[2, 0], [1, 3]], np.uint8)
    pjs, gt = write(tmp_path, [truth], [pred], pred_names=["sky", "road", "other", "car"])
    r = evaluate_semantic(pjs, gt)
    assert r["pixel_accuracy"] == pytest.approx(3 / 4)  # other, sky, road right; the "car" pixel wrong
    assert r["per_class_iou"] == {"other": 1.0, "sky": 1.0, "road": pytest.approx(0.5)}


@pytest.mark.parametrize("case, message", [("no_png", "no single-channel ground truth"), ("size", "the class map is 4x3"),
                                           ("no_maps", "has no class maps"), ("no_classes", "needs classes.json")])
def test_mismatched_files_are_one_line_errors(tmp_path, case, message):
    truth = np.zeros((3, 3), np.uint8)
    pred = np.zeros((3, 4) if case == "size" else (3, 3), np.uint8)
    pjs, gt = write(tmp_path, [truth], [pred])
    if case == "no_png":
        (gt / "000000.png").unlink()
    if case == "no_maps":
        pjs.write_text(json.dumps({"index": 0, "pts": 0, "source_id": 0, "detections": []}) + "\n")
    if case == "no_classes":
        (gt / "classes.json").unlink()
    with pytest.raises(EvalError, match=message):
        evaluate_semantic(pjs, gt)


def test_line_scoring_options_are_refused_with_per_pixel_ground_truth(tmp_path, capsys):
    truth = np.zeros((3, 3), np.uint8)
    pjs, gt = write(tmp_path, [truth], [truth])
    assert main(["eval", str(pjs), str(gt), "--events", str(pjs)]) == 2
    assert "drop them" in capsys.readouterr().err
