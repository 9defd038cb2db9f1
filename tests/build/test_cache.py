"""Engine cache of ``rtpipe run --backend aoti``: built on first use, reused, rebuilt when stale."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pipeline.build.cache import stale_reason  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.models import rtnet  # noqa: E402
from pipeline.paths.gpu import GpuPath  # noqa: E402
from pipeline.runtime import Pipeline  # noqa: E402
from pipeline.sidecar import sidecar_path  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402
from tests.conftest import assert_same_detections, pick_conf, yolo_checkpoint  # noqa: E402
from tests.fakes import Frames, Keep  # noqa: E402


def test_cache_builds_once_and_rebuilds_what_is_stale(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RTPIPE_ENGINE_DIR", str(tmp_path / "cache"))
    ckpt = yolo_checkpoint(tmp_path / "net.pt", imgsz=96, width=8)
    engine = tmp_path / "cache" / "net-96x96-b1-1-16-fp32-cpu.pt2"

    def load():
        model = load_model(str(ckpt), backend="aoti", rect=False)  # one square engine, built at load
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
    load_model(str(ckpt), backend="aoti", rect=False)
    engine = tmp_path / "cache" / "net-96x96-b1-1-16-fp32-cpu.pt2"
    rec = json.loads(sidecar_path(engine).read_text())
    wanted = {"checkpoint": rec["checkpoint"]["sha256"], "options": rec["options"], "versions": rec["versions"], "gpu": rec["gpu"]}
    assert stale_reason(engine, wanted, "cpu") is None
    assert stale_reason(engine, {**wanted, "options": {**rec["options"], "opset": 18}}, "cpu") == "build options changed"
    assert stale_reason(engine, {**wanted, "versions": {**rec["versions"], "torch": "9.9"}}, "cpu").startswith("library versions changed")
    capsys.readouterr()
    load_model(str(ckpt), backend="aoti", imgsz=64, rect=False)  # another input size is another engine, built beside the first
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


def test_stream_fitted_inputs_get_one_engine_per_shape(tmp_path, monkeypatch, capsys):
    """aoti on a checkpoint with inputs fitted to each frame (the default): nothing is built at
    load; the first frame of each shape builds that shape's engine (16:9, 4:3 and portrait:
    three engines, also when they come in one call), later frames and later loads reuse them;
    the detections are the torch backend's on the same fitted inputs."""
    monkeypatch.setenv("RTPIPE_ENGINE_DIR", str(tmp_path / "cache"))
    ckpt = str(yolo_checkpoint(tmp_path / "net.pt", imgsz=160, width=8))
    frames = [SyntheticScene(w, h, 3).render(5) for w, h in ((640, 360), (640, 480), (360, 640))]
    conf = pick_conf(np.concatenate([d.confidence for d in load_model(ckpt, backend="torch", conf=1e-3).predict(frames)]))
    reference = load_model(ckpt, backend="torch", conf=conf).predict(frames)
    model = load_model(ckpt, backend="aoti", conf=conf)
    assert model.info.fit.mode == "rect" and capsys.readouterr().err == "" and not (tmp_path / "cache").exists()
    for ref, got, frame in zip(reference, model.predict(frames), frames):
        assert_same_detections(ref, got, f"frame {frame.shape[1]}x{frame.shape[0]}")
    err = capsys.readouterr().err
    shapes = ["96x160", "128x160", "160x96"]
    assert err.count("building the aoti engine") == 3 and all(f"at input {s} " in err for s in shapes)
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.pt2")) == sorted(f"net-{s}-b1-1-16-fp32-cpu.pt2" for s in shapes)
    model.predict(frames[0])
    again = load_model(ckpt, backend="aoti", conf=conf)
    for ref, got in zip(reference, again.predict(frames)):
        assert_same_detections(ref, got)
    assert capsys.readouterr().err == "", "known shapes are reused, by the same model and by the next one"
    keep = Keep()  # in the pipeline on the GPU path (CPU tensors here): a batch of three shapes, one engine call each
    Pipeline(Frames(frames), again, [keep], batch=3, path=GpuPath(again)).run(handle_sigint=False)
    assert [i for i, _, _ in keep.got] == [0, 1, 2]
    for ref, (_, got, _) in zip(reference, keep.got):
        assert_same_away_from_the_threshold(ref, got, conf)


def assert_same_away_from_the_threshold(ref, got, conf: float, tol: float = 1e-2) -> None:
    """The GPU path fits frames with torch, within 1.5/255 of OpenCV's fit: scores move a little,
    so a detection within ``tol`` of the threshold may come or go; every other one is in both."""
    from pipeline.ops import box_iou

    assert len(ref) > 0
    for a, b in ((ref, got), (got, ref)):
        for i in np.flatnonzero(a.confidence >= conf + tol):
            same = (box_iou(a.xyxy[i : i + 1], b.xyxy)[0] >= 0.9) & (b.class_id == a.class_id[i])
            assert (same & (np.abs(b.confidence - a.confidence[i]) <= tol)).any(), f"detection {i} unmatched"
