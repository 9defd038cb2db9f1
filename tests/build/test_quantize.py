"""INT8 engines: Q/DQ nodes calibrated on frames from a folder, checked against the reference on the held-back frames.

The checkpoint is a session fixture of tests/conftest.py."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from pipeline.cli import main  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.sidecar import sidecar_path  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402


def test_int8_is_checked_against_the_reference_on_held_back_frames(checkpoints, tmp_path, capsys, monkeypatch):
    import cv2
    import onnx

    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(24):
        cv2.imwrite(str(calib / f"{i:02d}.png"), SyntheticScene(320, 240, i % 6).render(i))
    spec = checkpoints["yolo"][0]
    args = ["build", spec, "--precision", "int8", "--calib", str(calib), "--calib-frames", "24", "-o", str(tmp_path / "e")]
    assert main([*args, "--accept-accuracy-loss"]) == 0
    capsys.readouterr()
    engine = tmp_path / "e" / "rtnet-160x160-b1-int8.onnx"
    ops = {n.op_type for n in onnx.load(str(engine)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    report = json.loads(sidecar_path(engine).read_text())["check"]["int8"]
    assert report["frames"] == 6  # every fourth of 24 held back
    assert report["reference_detections"] > 0
    assert 0.0 <= report["box_match_rate"] <= 1.0 and report["mean_score_drift"] is not None
    assert load_model(str(engine)).predict([SyntheticScene(480, 360, 1).render(4)])  # it runs

    from pipeline.build import check

    monkeypatch.setattr(check, "INT8_MIN_MATCH", 1.01)  # a limit no engine meets
    engine.unlink()
    sidecar_path(engine).unlink()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "INT8 accuracy check failed: INT8 finds 9" in err and "pass --accept-accuracy-loss to keep it anyway" in err
    assert not engine.exists() and list(engine.parent.iterdir()) == []
