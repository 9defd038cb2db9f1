"""rtpipe build: ONNX and AOTInductor (CPU) engines from a YOLO-layout checkpoint and a torchvision
one-stage checkpoint match the PyTorch reference; the sidecar is complete; a wrong export fails."""

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from pipeline.build import BuildOptions, build, build_graph  # noqa: E402
from pipeline.build.options import CheckFailed  # noqa: E402
from pipeline.sidecar import SidecarError, sidecar_path  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.models import Graph, ModelError, resolve  # noqa: E402
from pipeline.models import torchvision as tvf  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402
from tests.conftest import assert_same_detections, pick_conf, spread_scores, yolo_checkpoint  # noqa: E402

SIDECAR_KEYS = {"schema", "engine", "format", "engine_bytes", "engine_sha256", "model", "input", "outputs", "precision", "batch",
                "device", "checkpoint", "options", "versions", "gpu", "cache_key", "check", "command", "built_at", "build_seconds"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """spec -> (weights or None, imgsz): a YOLO-layout rtnet checkpoint and a torchvision SSDlite state_dict."""
    tmp = tmp_path_factory.mktemp("ckpt")
    ssd = tvf.build("ssdlite320_mobilenet_v3_large", None, None)
    spread_scores(ssd, gain=1.6)  # random-init heads score every anchor alike; see tests/models/test_torchvision.py
    torch.save(ssd.state_dict(), tmp / "ssdlite.pth")
    return {"yolo": (str(yolo_checkpoint(tmp / "rtnet.pt")), None),
            "torchvision": ("torchvision:ssdlite320_mobilenet_v3_large", tmp / "ssdlite.pth")}


@pytest.fixture(scope="module")
def engines(checkpoints, tmp_path_factory):
    """family -> {format: engine path}: ONNX at batch 1, AOTI (CPU) with a dynamic batch 1..4."""
    out = tmp_path_factory.mktemp("engines")
    built = {}
    for family, (spec, weights) in checkpoints.items():
        built[family] = {
            "onnx": build(spec, BuildOptions(format="onnx"), out, weights=weights),
            "aoti": build(spec, BuildOptions(format="aoti", batch="1:2:4"), out, weights=weights),
        }
    return built


def images():
    return [SyntheticScene(480, 360, seed).render(4 * seed) for seed in (1, 2, 3)]


@pytest.mark.parametrize("family", ["yolo", "torchvision"])
@pytest.mark.parametrize("fmt", ["onnx", "aoti"])
def test_engine_detections_match_the_checkpoint(checkpoints, engines, family, fmt):
    spec, weights = checkpoints[family]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = load_model(spec, backend="torch", weights=weights, conf=1e-3, iou=0.5)
    conf = pick_conf(np.concatenate([d.confidence for d in probe.predict(images())]))
    reference = load_model(spec, backend="torch", weights=weights, conf=conf, iou=0.5).predict(images())
    engine = load_model(str(engines[family][fmt]), conf=conf, iou=0.5)
    assert engine.info.backend == {"onnx": "onnxruntime", "aoti": "aoti"}[fmt]
    for i, (ref, got) in enumerate(zip(reference, engine.predict(images()))):  # 3 frames: batch 1 ONNX runs them one by one
        assert_same_detections(ref, got, f"{family} {fmt} image {i}")


def test_sidecar_and_info_are_complete(engines, checkpoints, capsys):
    engine = engines["yolo"]["aoti"]
    record = json.loads(sidecar_path(engine).read_text())
    assert SIDECAR_KEYS <= set(record)
    m = record["model"]
    names = ["car", "pedestrian", "cyclist", "sign"]
    assert (m["family"], m["task"], m["names"], m["fit"]["input_hw"]) == ("yolo", "segment", names, [160, 160])
    assert record["outputs"] == {"output0": [40, 400], "output1": [32, 40, 40]}
    assert record["batch"] == {"min": 1, "opt": 2, "max": 4} and record["precision"] == "fp32" and record["gpu"] is None
    assert record["versions"]["torch"] == torch.__version__.split("+")[0] or record["versions"]["torch"] == torch.__version__
    import hashlib

    assert record["checkpoint"]["sha256"] == hashlib.sha256(open(checkpoints["yolo"][0], "rb").read()).hexdigest()
    assert record["check"]["outputs"]["output0"]["max_rel_diff"] <= 1e-3
    assert record["command"].startswith(f"rtpipe build {checkpoints['yolo'][0]} --format aoti --precision fp32 --batch 1:2:4")

    assert main(["info", str(engine)]) == 0
    text = capsys.readouterr().err
    for expected in ("aoti  fp32", "yolo / rtnet", "car, pedestrian, cyclist, sign", "letterbox", "output0 [B, 40, 400]",
                     "1..4 (opt 2)", record["checkpoint"]["sha256"][:16], f"torch {record['versions']['torch']}", "rebuild", "runs here"):
        assert expected in text, f"'{expected}' missing from rtpipe info"
    assert "yes" in text.split("runs here")[1]
    assert main(["info", str(engine), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == record

    tv = json.loads(sidecar_path(engines["torchvision"]["onnx"]).read_text())
    assert tv["model"]["arch"] == "ssdlite320_mobilenet_v3_large" and tv["model"]["fit"]["mode"] == "stretch"
    assert "mean" in tv["input"]["normalisation"] and tv["checkpoint"]["path"].endswith("ssdlite.pth")


class BakedScale(torch.nn.Module):
    """A deliberately wrong export wrapper: a tensor turned into a Python number is a constant to the tracer."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, images):
        out0, out1 = self.inner(images)
        return out0 * float(images.mean()), out1


def test_a_graph_that_disagrees_with_its_checkpoint_fails_the_build(checkpoints, tmp_path):
    graph = resolve(checkpoints["yolo"][0])
    broken = Graph(graph.meta, graph.label, module=BakedScale(graph.module), source=graph.source)
    with pytest.raises(CheckFailed, match="the exported onnx graph does not match its checkpoint: output 'output0' differs"):
        build_graph(broken, BuildOptions(format="onnx", batch="1:2:2"), tmp_path)
    assert list(tmp_path.iterdir()) == [], "a failed build must leave no engine (and no partial file)"


def test_build_cli_errors_are_one_line(checkpoints, tmp_path, capsys):
    spec = checkpoints["yolo"][0]
    cases = [
        (["--format", "tensorrt"], "add --device cuda"),
        (["--format", "aoti", "--precision", "int8", "--calib", str(tmp_path)], "int8 is built for --format onnx or tensorrt"),
        (["--precision", "int8"], "int8 needs calibration frames: add --calib PATH"),
        (["--batch", "4:2:8"], "need 1 <= MIN <= OPT <= MAX"),
        (["--format", "aoti", "--precision", "fp16"], "fp16 AOTInductor engines need --device cuda"),
    ]
    for args, message in cases:
        assert main(["build", spec, "-o", str(tmp_path), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["build", "torchvision:maskrcnn_resnet50_fpn", "--weights", "random", "--batch", "2", "-o", str(tmp_path)]) == 2
    assert "exported at batch 1: use --batch 1" in capsys.readouterr().err
    rcnn = "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"
    assert main(["build", rcnn, "--weights", "random", "--format", "aoti", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "torch.export cannot trace two-stage models" in err and err.count("\n") == 2  # the random-weights warning, the error
    assert list(tmp_path.iterdir()) == []


def test_engines_that_do_not_fit_are_refused_with_the_rebuild_command(engines, tmp_path):
    import shutil

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
    import shutil

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
    assert load_model(str(engine)).predict(images()[:1])  # it runs

    from pipeline.build import check

    monkeypatch.setattr(check, "INT8_MIN_MATCH", 1.01)  # a limit no engine meets
    engine.unlink()
    sidecar_path(engine).unlink()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "INT8 accuracy check failed: INT8 finds 9" in err and "pass --accept-accuracy-loss to keep it anyway" in err
    assert not engine.exists() and list(engine.parent.iterdir()) == []


def test_batch_option_parsing():
    from pipeline.build.options import Batch

    assert Batch.parse("4") == Batch(4, 4, 4) and Batch.parse("4").fixed and Batch.parse("4").check_sizes() == [4]
    b = Batch.parse("1:4:8")
    assert (b.fixed, str(b), b.label(), b.check_sizes()) == (False, "1:4:8", "1-4-8", [1, 8])
    for bad in ("0", "8:4:1", "1:2", "x", "2000"):
        with pytest.raises(ValueError, match="batch"):
            Batch.parse(bad)


def test_fp16_onnx_is_a_half_graph_with_float_edges(checkpoints, tmp_path):
    import onnx

    engine = build(checkpoints["yolo"][0], BuildOptions(precision="fp16"), tmp_path)
    proto = onnx.load(str(engine))
    f16 = onnx.TensorProto.FLOAT16
    assert any(t.data_type == f16 for t in proto.graph.initializer), "the weights are fp16"
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in [*proto.graph.input, *proto.graph.output])
    check = json.loads(sidecar_path(engine).read_text())["check"]
    assert check["limit_rel"] == 2e-2 and all(o["max_rel_diff"] <= 2e-2 for o in check["outputs"].values())
    assert len(load_model(str(engine)).predict(images()[:2])) == 2
