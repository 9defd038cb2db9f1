"""Sidecars: what a built engine's sidecar records, and engines that no longer fit it (or this
machine) refused with the command that rebuilds them, by load_model and by ``rtpipe run``.

The engines are the session fixtures of tests/conftest.py (built by tests/build/'s builder)."""

import hashlib
import json
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from pipeline.cli import main  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.models import ModelError  # noqa: E402
from pipeline.sidecar import SidecarError, sidecar_path  # noqa: E402

SIDECAR_KEYS = {"schema", "engine", "format", "engine_bytes", "engine_sha256", "model", "input", "outputs", "precision", "batch",
                "device", "checkpoint", "options", "versions", "gpu", "cache_key", "check", "command", "built_at", "build_seconds"}


def test_sidecar_is_complete(engines, checkpoints):
    engine = engines["yolo"]["aoti"]
    record = json.loads(sidecar_path(engine).read_text())
    assert SIDECAR_KEYS <= set(record)
    m = record["model"]
    names = ["car", "pedestrian", "cyclist", "sign"]
    assert (m["family"], m["task"], m["names"], m["fit"]["input_hw"]) == ("yolo", "segment", names, [160, 160])
    assert record["outputs"] == {"output0": [40, 400], "output1": [32, 40, 40]}
    assert record["batch"] == {"min": 1, "opt": 2, "max": 4} and record["precision"] == "fp32" and record["gpu"] is None
    assert record["versions"]["torch"] == torch.__version__.split("+")[0] or record["versions"]["torch"] == torch.__version__
    assert record["checkpoint"]["sha256"] == hashlib.sha256(open(checkpoints["yolo"][0], "rb").read()).hexdigest()
    assert record["check"]["outputs"]["output0"]["max_rel_diff"] <= 1e-3
    assert record["command"].startswith(f"rtpipe build {checkpoints['yolo'][0]} --format aoti --precision fp32 --batch 1:2:4")

    tv = json.loads(sidecar_path(engines["torchvision"]["onnx"]).read_text())
    assert tv["model"]["arch"] == "ssdlite320_mobilenet_v3_large" and tv["model"]["fit"]["mode"] == "stretch"
    assert "mean" in tv["input"]["normalisation"] and tv["checkpoint"]["path"].endswith("ssdlite.pth")


def test_engines_that_do_not_fit_are_refused_with_the_rebuild_command(engines, tmp_path):
    src = engines["yolo"]["aoti"]
    engine = tmp_path / src.name
    shutil.copy(src, engine)
    shutil.copy(sidecar_path(src), sidecar_path(engine))
    record = json.loads(sidecar_path(engine).read_text())
    load_model(str(engine))  # a faithful copy loads

    sidecar_path(engine).write_text(json.dumps({**record, "versions": {**record["versions"], "torch": "1.0.0"}}))
    with pytest.raises(ModelError, match=r"built with torch 1\.0\.0, this machine has torch .*; rebuild it with: rtpipe build "):
        load_model(str(engine))
    sidecar_path(engine).write_text(json.dumps({**record, "gpu": {"name": "NVIDIA H100", "compute_capability": "9.0"}, "device": "cuda"}))
    with pytest.raises(ModelError, match="built for a CUDA GPU .*asked to run on cpu; use --device cuda or rebuild it with"):
        load_model(str(engine))
    sidecar_path(engine).write_text(json.dumps(record))
    engine.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(ModelError, match="does not match its sidecar \\(truncated, replaced or corrupt\\)"):
        load_model(str(engine))
    sidecar_path(engine).unlink()
    with pytest.raises(ModelError, match="has no sidecar"):
        load_model(str(engine))
    with pytest.raises((SidecarError, ModelError), match="not found"):
        load_model(str(tmp_path / "absent.pt2"))


def test_run_with_an_engine_that_does_not_fit_is_one_line_with_the_fix(engines, tmp_path, capsys):
    src = engines["yolo"]["aoti"]
    engine = tmp_path / src.name
    shutil.copy(src, engine)
    record = json.loads(sidecar_path(src).read_text())
    sidecar_path(engine).write_text(json.dumps({**record, "versions": {**record["versions"], "torch": "1.0.0"}}))
    out = tmp_path / "o.jsonl"
    code = main(["run", "synthetic:64x48@30?live=0&frames=2", "--model", str(engine), "--json", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "rebuild it with: rtpipe build " in err, err
    assert not out.exists() and not (tmp_path / "o.jsonl.partial").exists()


def _bundled_record(tmp_path):
    """A copy of the bundled demo ONNX and its sidecar, to damage."""
    from pipeline.models import BUILTIN

    engine = tmp_path / "m.onnx"
    shutil.copy(BUILTIN["demo"], engine)
    shutil.copy(sidecar_path(BUILTIN["demo"]), sidecar_path(engine))
    return engine, json.loads(sidecar_path(engine).read_text())


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: 5, "not an rtpipe engine record"),
        (lambda r: None, "not an rtpipe engine record"),
        (lambda r: {**r, "format": "xyz"}, "bad format"),
        (lambda r: {**r, "versions": None}, "bad versions"),
        (lambda r: {k: v for k, v in r.items() if k != "batch"}, "missing batch"),
        (lambda r: {**r, "checkpoint": "x"}, "bad checkpoint"),
    ],
)
def test_a_damaged_sidecar_is_refused_in_one_line(tmp_path, capsys, damage, message):
    from pipeline.sidecar import read

    engine, record = _bundled_record(tmp_path)
    sidecar_path(engine).write_text(json.dumps(damage(record)))
    with pytest.raises(SidecarError, match=message):
        read(engine)
    assert main(["info", str(engine)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtpipe: error:") and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt, built, here, blocks", [
    ("onnx", {"onnxruntime": "1.31.1"}, {"onnxruntime": "1.32.0"}, False),
    ("onnx", {"onnxruntime": "1.31.1"}, {"onnxruntime": None}, True),
    ("aoti", {"torch": "2.14.0"}, {"torch": "2.14.1+cpu"}, False),
    ("aoti", {"torch": "2.13.0"}, {"torch": "2.14.0"}, True),
    ("tensorrt", {"tensorrt": "10.9.0.34"}, {"tensorrt": "10.9.0.34"}, False),
    ("tensorrt", {"tensorrt": "10.9.0.34"}, {"tensorrt": "10.10.0.31"}, True),
])
def test_only_a_version_difference_that_matters_blocks_an_engine(monkeypatch, fmt, built, here, blocks):
    import pipeline.sidecar as sc

    monkeypatch.setattr(sc, "versions", lambda libs=None: {lib: here.get(lib) for lib in libs})
    record = {"format": fmt, "versions": built, "gpu": None}
    assert bool(sc.problems(record)) == blocks
    assert bool(sc.notes(record)) == (not blocks and built != here)


def test_info_on_the_bundled_model_says_it_runs_here_with_a_note_for_another_onnxruntime(tmp_path, monkeypatch, capsys):
    import pipeline.sidecar as sc

    engine, record = _bundled_record(tmp_path)
    sidecar_path(engine).write_text(json.dumps({**record, "versions": {**record["versions"], "onnxruntime": "1.0.0"}}))
    assert main(["info", str(engine)]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    row = next(line for line in out.splitlines() if "runs here" in line)
    assert "yes" in row and "no:" not in row, out
    assert "built with onnxruntime 1.0.0" in out and "fine" in out and sc.problems(json.loads(sidecar_path(engine).read_text())) == []


@pytest.mark.parametrize("command, shown", [
    ("rtpipe build m.pt --format onnx -o engines --name m", "rtpipe build m.pt --format onnx -o engines --name m --overwrite"),
    ("rtpipe build m.pt -o engines --overwrite", "rtpipe build m.pt -o engines --overwrite"),
])
def test_the_rebuild_command_shown_replaces_the_engine(command, shown):
    """rtpipe build refuses an existing engine without --overwrite: a rebuild hint must carry it,
    also from records written before that rule (the shipped demo sidecar is one)."""
    from pipeline.sidecar import rebuild_command

    assert rebuild_command({"command": command}) == shown
