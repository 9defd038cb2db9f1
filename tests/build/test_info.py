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
    text = capsys.readouterr().err
    for expected in ("aoti  fp32", "yolo / rtnet", "car, pedestrian, cyclist, sign", "letterbox", "output0 [B, 40, 400]",
                     "1..4 (opt 2)", record["checkpoint"]["sha256"][:16], f"torch {record['versions']['torch']}", "rebuild", "runs here"):
        assert expected in text, f"'{expected}' missing from rtpipe info"
    assert "yes" in text.split("runs here")[1]
    assert main(["info", str(engine), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == record
