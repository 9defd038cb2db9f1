"""Engine cache of ``rtpipe run --backend aoti``: built on first use, reused, rebuilt when stale."""

import json

import pytest

torch = pytest.importorskip("torch")

from pipeline.build.cache import stale_reason  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.models import rtnet  # noqa: E402
from pipeline.sidecar import sidecar_path  # noqa: E402
from tests.conftest import yolo_checkpoint  # noqa: E402


def test_cache_builds_once_and_rebuilds_what_is_stale(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RTPIPE_ENGINE_DIR", str(tmp_path / "cache"))
    ckpt = yolo_checkpoint(tmp_path / "net.pt", imgsz=96, width=8)
    engine = tmp_path / "cache" / "net-96x96-b1-1-16-fp32-cpu.pt2"

    def load():
        model = load_model(str(ckpt), backend="aoti")
        assert model.info.backend == "aoti"
        return capsys.readouterr().err, engine.stat().st_mtime_ns

    err, first = load()
    assert "building the aoti engine" in err and engine.exists()
    err, again = load()
    assert err == "" and again == first, "a fresh cached engine is reused as it is"

    record = json.loads(sidecar_path(engine).read_text())  # a tampered checkpoint hash in the sidecar
    sidecar_path(engine).write_text(json.dumps({**record, "checkpoint": {**record["checkpoint"], "sha256": "0" * 64}}))
    err, rebuilt = load()
    assert "is stale (checkpoint sha256 changed): rebuilding" in err and rebuilt != first

    net = rtnet.build(["car", "pedestrian", "cyclist", "sign"], imgsz=96, width=8, seed=5)  # new weights, same file
    rtnet.save(net, ckpt)
    err, retrained = load()
    assert "is stale (checkpoint sha256 changed): rebuilding" in err and retrained != rebuilt

    engine.write_bytes(engine.read_bytes()[:1000])  # a truncated engine
    err, repaired = load()
    assert "does not match its sidecar" in err and repaired != retrained
    assert json.loads(sidecar_path(engine).read_text())["engine_sha256"] != record["engine_sha256"]


def test_a_changed_build_option_is_stale(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RTPIPE_ENGINE_DIR", str(tmp_path / "cache"))
    ckpt = yolo_checkpoint(tmp_path / "net.pt", imgsz=96, width=8)
    load_model(str(ckpt), backend="aoti")
    engine = tmp_path / "cache" / "net-96x96-b1-1-16-fp32-cpu.pt2"
    rec = json.loads(sidecar_path(engine).read_text())
    wanted = {"checkpoint": rec["checkpoint"]["sha256"], "options": rec["options"], "versions": rec["versions"], "gpu": rec["gpu"]}
    assert stale_reason(engine, wanted, "cpu") is None
    assert stale_reason(engine, {**wanted, "options": {**rec["options"], "opset": 18}}, "cpu") == "build options changed"
    assert stale_reason(engine, {**wanted, "versions": {**rec["versions"], "torch": "9.9"}}, "cpu").startswith("library versions changed")
    capsys.readouterr()
    load_model(str(ckpt), backend="aoti", imgsz=64)  # another input size is another engine, built beside the first
    assert "building the aoti engine" in capsys.readouterr().err
    assert (tmp_path / "cache" / "net-64x64-b1-1-16-fp32-cpu.pt2").exists() and engine.exists()


def test_run_with_the_aoti_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("RTPIPE_ENGINE_DIR", str(tmp_path / "cache"))
    ckpt = yolo_checkpoint(tmp_path / "net.pt", imgsz=96, width=8)
    out = tmp_path / "det.jsonl"
    code = main(["run", "synthetic:320x240@30?live=0&frames=6", "--model", str(ckpt), "--backend", "aoti", "--batch", "3",
                 "--json", str(out), "--quiet"])
    assert code == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 6
    engine = next((tmp_path / "cache").glob("*.pt2"))
    assert main(["run", "synthetic:320x240@30?live=0&frames=2", "--model", str(engine), "--quiet"]) == 0
