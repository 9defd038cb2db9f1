"""``rtpipe info``: a built engine's sidecar as a readable table, and as the sidecar itself with --json.

The engine is a session fixture of tests/conftest.py; what the sidecar holds is tested in tests/test_sidecar.py."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from pipeline.cli import main  # noqa: E402
from pipeline.sidecar import sidecar_path  # noqa: E402


def test_info_shows_the_sidecar(engines, capsys):
    engine = engines["yolo"]["aoti"]
    record = json.loads(sidecar_path(engine).read_text())
    assert main(["info", str(engine)]) == 0
    text = capsys.readouterr().out  # a result: stdout
    for expected in ("aoti  fp32", "yolo / rtnet", "car, pedestrian, cyclist, sign", "letterbox", "output0 [B, 40, 400]",
                     "1..4 (opt 2)", record["checkpoint"]["sha256"][:16], f"torch {record['versions']['torch']}", "rebuild", "runs here"):
        assert expected in text, f"'{expected}' missing from rtpipe info"
    assert "yes" in text.split("runs here")[1]
    accepts = " ".join(text.split("accepts")[1].split("│")[1:3])  # the row's cell (it may wrap)
    assert "3x160x160 only" in " ".join(accepts.split()) and "batches of 1..4" in accepts
    assert main(["info", str(engine), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == record


def test_a_sidecar_whose_model_does_not_validate_is_one_line(tmp_path, capsys):
    import shutil

    from pipeline.models import BUILTIN

    engine = tmp_path / "m.onnx"
    shutil.copy(BUILTIN["demo"], engine)
    record = json.loads(sidecar_path(BUILTIN["demo"]).read_text())
    record["model"]["names"] = 7
    sidecar_path(engine).write_text(json.dumps(record))
    assert main(["info", str(engine)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtpipe: error:") and "field 'names'" in err and len(err.strip().splitlines()) == 1


def test_accepts_says_which_shapes_an_engine_takes():
    from pipeline.build.info import accepts
    from pipeline.types import EngineMeta, Fit

    def meta(fit):
        return EngineMeta(family="yolo", task="detect", names=("a",), fit=fit, outputs=("output0",))

    fixed = accepts(meta(Fit((384, 640))), {"min": 1, "max": 1})
    assert fixed.startswith("3x384x640 only (batches of 1)") and "letterboxed" in fixed
    fitted = accepts(meta(Fit((640, 640), "rect", stride=32)), {"min": 1, "max": 8})
    assert fitted.startswith("any height and width (batches of 1..8)") and "up to 640x640 (multiples of 32)" in fitted
