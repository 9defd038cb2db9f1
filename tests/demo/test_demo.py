"""The bundled demo model and ``rtpipe demo``: shipped weights, backends that agree, accuracy floors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.demo.scenes import CLASSES, Scene
from pipeline.loader import load_model
from pipeline.models import BUILTIN, BUILTIN_CHECKPOINTS
from pipeline.ops import box_iou
from tests.test_cli import rtpipe

CKPT, ONNX = BUILTIN_CHECKPOINTS["demo"], BUILTIN["demo"]
# floors a few points below what the bundled weights score on the 60-frame unseen clip (seed 11) below
# (README "Demo model" has the full-length numbers); they catch a broken decoder, export or clip
FLOOR = {"box mAP": 0.58, "mask mAP50": 0.80}  # measured: 0.637 and 0.853
# the road model on the same clip: measured mIoU 0.920, pixel accuracy 0.983, other/sky/road/sidewalk
# 0.915/0.982/0.987/0.927, lane marking 0.791
SEMANTIC_FLOOR = {"miou": 0.88, "pixel": 0.96, "class": 0.88, "lane marking": 0.7}


@pytest.fixture(scope="module")
def frames():
    scene = Scene(7)
    return [f.image for k, f in zip(range(24), scene.frames(24)) if k % 3 == 0]


def test_bundled_weights_are_small_and_record_their_recipe():
    torch = pytest.importorskip("torch")
    assert CKPT.stat().st_size <= 10e6
    ckpt = torch.load(CKPT, weights_only=True)
    t = ckpt["training"]
    assert t["command"].startswith("python -m pipeline.demo.train") and isinstance(t["seed"], int)
    assert t["steps_done"] == t["config"]["steps"] and t["minutes"] <= 60
    assert ckpt["config"]["names"] == list(CLASSES)


def test_bundled_onnx_is_the_export_of_the_bundled_checkpoint(tmp_path, frames):
    pytest.importorskip("torch")
    from pipeline.build import BuildOptions, build

    rebuilt = build(str(CKPT), BuildOptions(batch="1:1:16"), tmp_path, name="demo-seg")
    shipped, fresh = load_model(str(ONNX)), load_model(str(rebuilt))
    x = np.stack([shipped.preprocess(f)[0] for f in frames[:2]])
    a, b = shipped.backend.infer(x), fresh.backend.infer(x)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-4)


def assert_identical(ref, got, where):
    assert len(ref) == len(got) > 0, f"{where}: {len(got)} detections vs {len(ref)}"
    iou = box_iou(ref.xyxy, got.xyxy)
    j = iou.argmax(1)
    assert len(set(j.tolist())) == len(ref), f"{where}: detections do not pair up"
    assert np.abs(ref.xyxy - got.xyxy[j]).max() < 0.05, where
    assert np.array_equal(ref.class_id, got.class_id[j]) and np.abs(ref.confidence - got.confidence[j]).max() < 1e-4, where
    a, b = ref.mask.dense(), got.mask.dense()[j]
    assert (a != b).sum() <= 0.002 * max(a.sum(), 1), f"{where}: masks differ in {(a != b).sum()} pixels"


@pytest.mark.parametrize("backend", ["torch", "aoti"])
def test_backends_give_identical_detections_on_the_demo_clip(backend, frames, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("RTPIPE_ENGINE_DIR", str(tmp_path))
    ref = load_model("demo")
    assert ref.info.backend == "onnxruntime" and ref.info.path == "demo"
    got = load_model("demo", backend=backend)
    assert got.info.backend == backend
    for k, (r, g) in enumerate(zip(ref.predict(frames), got.predict(frames))):
        assert_identical(r, g, f"{backend} frame {k}")


def test_the_bundled_road_model_is_the_export_of_its_checkpoint(frames):
    """demo-road.onnx (ONNX Runtime) and the RoadNet weights beside it (torch) give the same class
    maps; its metadata says what it is."""
    torch = pytest.importorskip("torch")
    from pipeline.demo.scenes import SEMANTIC
    from pipeline.demo.train_road import MEAN, STD
    from pipeline.models.rtseg import RoadNet

    model = load_model("demo-road")
    assert model.info.task == "semantic" and model.info.names == SEMANTIC and model.info.fit.per_frame
    net = RoadNet(len(SEMANTIC))
    net.load_state_dict(torch.load(BUILTIN["demo-road"].with_suffix(".pt"), weights_only=True))
    net.eval()
    for image in frames[:3]:
        x, _ = model.preprocess(image)
        mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
        with torch.no_grad():
            want = net((torch.from_numpy(x[None]) - mean) / std)["out"].argmax(1)[0].numpy()
        got = model.infer(x[None])["class_map"][0]
        assert float((want == got).mean()) >= 0.999


def test_demo_command_writes_everything_and_holds_the_accuracy_floor(tmp_path):
    out = tmp_path / "demo"
    r = rtpipe("demo", "--seed", 11, "--frames", 60, "--out", out, timeout=300)
    assert r.returncode == 0, r.stderr
    names = {p.name for p in out.iterdir()}
    assert names == {"clip.mp4", "ground_truth.json", "ground_truth_mot.txt", "crossings.json", "annotated.mp4", "detections.jsonl",
                     "events.jsonl", "metrics.json", "accuracy.json", "ground_truth_semantic", "road.mp4", "road.jsonl"}
    lines = (out / "detections.jsonl").read_text().splitlines()
    assert len(lines) == 60 and json.loads((out / "metrics.json").read_text())["frames_out"] == 60
    acc = json.loads((out / "accuracy.json").read_text())
    assert acc["frames"] == 60 and acc["objects"] > 100
    assert acc["box"]["mAP"] >= FLOOR["box mAP"] and acc["mask"]["mAP50"] >= FLOOR["mask mAP50"], acc
    assert "box mAP@.5:.95" in r.stdout and "end to end" in r.stdout  # accuracy and metrics tables: stdout
    sem = acc["semantic"]  # the road model on the same clip
    assert sem["frames"] == 60 and sem["miou"] >= SEMANTIC_FLOOR["miou"] and sem["pixel_accuracy"] >= SEMANTIC_FLOOR["pixel"], sem
    assert {k: v >= SEMANTIC_FLOOR.get(k, SEMANTIC_FLOOR["class"]) for k, v in sem["per_class_iou"].items()} == dict.fromkeys(
        ("other", "sky", "road", "lane marking", "sidewalk"), True), sem
    assert "semantic accuracy" in r.stdout


# floors below what the bundled weights and the default tracker (botsort) score on the unseen
# 300-frame clip seed 12 (README "Demo model" has other clips); they catch a tracker that mixes
# ids up, drops them, or a line that stops counting
TRACK_FLOOR = {"HOTA": 0.57, "MOTA": 0.75, "IDF1": 0.62, "lines": 0.6}  # measured: 0.626, 0.824, 0.688, 0.8


def test_demo_tracks_an_unseen_clip_above_the_floors(tmp_path):
    from pipeline.analytics import Event

    out = tmp_path / "demo"
    r = rtpipe("demo", "--seed", 12, "--out", out, timeout=300)
    assert r.returncode == 0, r.stderr
    acc = json.loads((out / "accuracy.json").read_text())
    t, gate = acc["tracking"], acc["lines"]["gate"]
    assert {k: t[k] >= TRACK_FLOOR[k] for k in ("HOTA", "MOTA", "IDF1")} == {"HOTA": True, "MOTA": True, "IDF1": True}, t
    assert gate["accuracy"] >= TRACK_FLOOR["lines"] and sum(gate["true"].values()) >= 3, gate
    events = [Event.from_json(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert {e.name for e in events} == {"gate"}
    counted = json.loads((out / "metrics.json").read_text())["tracking"]["counts"]["gate"]  # the run's own count
    assert {k: v["all"] for k, v in counted.items()} == gate["counted"]
    assert "HOTA" in r.stdout and "line counts against the true crossings" in r.stdout
    records = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    assert {type(d["tracker_id"]) for rec in records for d in rec["detections"]} == {int, type(None)}


@pytest.mark.parametrize("args, message", [(["--frames", "0"], "--frames 0"), (["--out", "FILE"], "is a file")])
def test_demo_refuses_bad_arguments(args, message, tmp_path):
    (tmp_path / "FILE").write_text("x")
    r = rtpipe("demo", *[str(tmp_path / a) if a == "FILE" else a for a in args])
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1
