"""rtpipe build: ONNX and AOTInductor (CPU) engines from a YOLO-layout checkpoint and a torchvision
one-stage checkpoint match the PyTorch reference; a wrong export fails; build errors are one line.

The checkpoints and engines are the session fixtures of tests/conftest.py; the sidecar's contents
and refusals are tested in tests/test_sidecar.py, ``rtpipe info`` in tests/build/test_info.py."""

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from pipeline.build import BuildOptions, build, build_graph  # noqa: E402
from pipeline.build.options import CheckFailed  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.models import Network, resolve  # noqa: E402
from pipeline.sidecar import sha256, sidecar_path  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402
from tests.conftest import assert_same_detections, pick_conf  # noqa: E402
from tests.fakes import baked_scale  # noqa: E402


def images():
    return [SyntheticScene(480, 360, seed).render(4 * seed) for seed in (1, 2, 3)]


@pytest.mark.parametrize("family", ["yolo", "torchvision"])
@pytest.mark.parametrize("fmt", ["onnx", "aoti"])
def test_engine_detections_match_the_checkpoint(checkpoints, engines, family, fmt):
    spec, weights = checkpoints[family]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = load_model(spec, backend="torch", weights=weights, conf=1e-3, iou=0.5, rect=False)  # the engine's fixed input
    conf = pick_conf(np.concatenate([d.confidence for d in probe.predict(images())]))
    reference = load_model(spec, backend="torch", weights=weights, conf=conf, iou=0.5, rect=False).predict(images())
    engine = load_model(str(engines[family][fmt]), conf=conf, iou=0.5)
    assert engine.info.backend == {"onnx": "onnxruntime", "aoti": "aoti"}[fmt]
    for i, (ref, got) in enumerate(zip(reference, engine.predict(images()))):  # 3 frames: batch 1 ONNX runs them one by one
        assert_same_detections(ref, got, f"{family} {fmt} image {i}")


def test_a_graph_that_disagrees_with_its_checkpoint_fails_the_build(checkpoints, tmp_path):
    graph = resolve(checkpoints["yolo"][0])
    broken = Network(graph.meta, graph.label, module=baked_scale(graph.module), source=graph.source)
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


@pytest.mark.parametrize("fmt", ["onnx", "aoti"])
def test_semantic_engines_pass_the_check_and_give_the_checkpoints_class_maps(tmp_path, fmt):
    """A semantic model (LR-ASPP) built to ONNX and AOTInductor: the builder's check judges the
    class map by the share of pixels of another class; the engine's maps are the checkpoint's
    on the same fixed input; rtpipe info says so."""
    from pipeline.models import semantic
    from tests.conftest import spread_scores

    arch = "lraspp_mobilenet_v3_large"
    net = semantic.build(arch)
    spread_scores(net, seed=2)
    weights = tmp_path / "w.pth"
    torch.save(net.state_dict(), weights)
    engine = build(f"torchvision:{arch}", BuildOptions(format=fmt, imgsz=96), tmp_path / "out", weights=weights)
    record = json.loads(sidecar_path(engine).read_text())
    assert record["model"]["task"] == "semantic" and record["check"]["outputs"]["class_map"]["pixels_differing"] <= 1e-3
    reference = load_model(f"torchvision:{arch}", backend="torch", weights=weights, imgsz=96, rect=False)
    model = load_model(str(engine))
    classes = set()
    for w, h in ((480, 270), (400, 300), (270, 480)):
        image = SyntheticScene(w, h, 2).render(3)
        want, got = reference.predict(image)[0].class_map.ids, model.predict(image)[0].class_map.ids
        assert float((want == got).mean()) >= 0.999
        classes |= set(np.unique(want).tolist())
    assert len(classes) >= 3, "the maps should not be one class"
    assert main(["info", str(engine)]) == 0


@pytest.mark.parametrize("fmt", ["onnx", "aoti"])
def test_classifier_engines_pass_the_check_and_give_the_checkpoints_probabilities(tmp_path, fmt):
    """A classifier (ResNet-18) built to ONNX and AOTInductor: the builder's check passes on its
    softmax output, and the engine's top-5 and probabilities are the checkpoint's."""
    from pipeline.models import classify
    from tests.models.test_classify import spread

    net = classify.build("resnet18")
    spread(net, 1.0, SyntheticScene(320, 240, 1).render(0), "resnet18")
    weights = tmp_path / "w.pth"
    torch.save(net.state_dict(), weights)
    engine = build("torchvision:resnet18", BuildOptions(format=fmt, batch="1:2:2"), tmp_path / "out", weights=weights)
    record = json.loads(sidecar_path(engine).read_text())
    assert record["model"]["task"] == "classify" and record["check"]["outputs"]["probs"]["max_rel_diff"] <= 1e-3
    reference = load_model("torchvision:resnet18", backend="torch", weights=weights)
    model = load_model(str(engine))
    for w, h in ((480, 270), (400, 300), (270, 480)):
        image = SyntheticScene(w, h, 2).render(3)
        want, got = reference.predict(image)[0].labels, model.predict(image)[0].labels
        assert list(got.class_id) == list(want.class_id)
        np.testing.assert_allclose(got.confidence, want.confidence, rtol=1e-3, atol=1e-6)


def test_an_existing_engine_is_kept_without_overwrite(checkpoints, tmp_path, capsys, monkeypatch):
    """An engine, its sidecar or a link at either name is refused in one line naming it, exit 2,
    before any export work, and left as it was; the recorded rebuild command replaces it."""
    import shlex

    import pipeline.build.samples as samples

    fresh = ["build", checkpoints["yolo"][0], "-o", str(tmp_path)]
    assert main(fresh) == 0
    engine = next(tmp_path.glob("*.onnx"))
    sidecar = sidecar_path(engine)
    capsys.readouterr()
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (engine, sidecar)}
    command = json.loads(sidecar.read_text())["command"]
    assert command.endswith(" --overwrite"), "the rebuild command replaces the engine it describes"
    args = shlex.split(command)[1:]

    def no_work(*_a, **_k):
        raise AssertionError("export work started before the refusal")

    with monkeypatch.context() as m:
        m.setattr(samples, "sample_inputs", no_work)
        assert main(fresh) == 2
        err = capsys.readouterr().err
        assert f"'{engine}' exists: pass --overwrite" in err and err.count("\n") == 1, err
        engine.unlink()
        engine.symlink_to(tmp_path / "elsewhere.onnx")  # a link at the name (dangling) counts as existing
        assert main(fresh) == 2 and f"'{engine}' exists" in capsys.readouterr().err
        engine.unlink()
        assert main(fresh) == 2, "a sidecar alone (it would be replaced) is refused too"
        assert f"'{sidecar}' exists: pass --overwrite" in capsys.readouterr().err
        assert not (tmp_path / "elsewhere.onnx").exists()
    engine.write_bytes(before[engine][0])
    assert sidecar.read_bytes() == before[sidecar][0] and sidecar.stat().st_mtime_ns == before[sidecar][1]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([engine.name, sidecar.name])

    assert main(args) == 0  # the recorded command, as it is
    record = json.loads(sidecar.read_text())
    assert record["engine_sha256"] == sha256(engine) and sidecar.stat().st_mtime_ns != before[sidecar][1]


def test_the_package_model_folder_is_written_only_with_overwrite(checkpoints, tmp_path, capsys, monkeypatch):
    """rtpipe's own model folder (pipeline/models/assets: the shipped demo models) is refused as an
    output, also for a new name or a folder inside it, unless --overwrite. (The folder is
    stood in for by a temporary one, so that a broken check cannot replace the shipped files.)"""
    import pipeline.models

    assets = tmp_path / "assets"
    (assets / "sub").mkdir(parents=True)
    monkeypatch.setattr(pipeline.models, "ASSETS", assets)
    spec = checkpoints["yolo"][0]
    for out in (assets, assets / "sub", tmp_path / "link"):
        if out.name == "link":
            out.symlink_to(assets, target_is_directory=True)  # the same folder by another path
        assert main(["build", spec, "-o", str(out), "--name", "new"]) == 2
        err = capsys.readouterr().err
        assert f"'{out}' is rtpipe's own model folder" in err and "--overwrite" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in assets.rglob("*")) == ["sub"]
    assert main(["build", spec, "-o", str(assets), "--name", "new", "--overwrite"]) == 0
    assert (assets / "new.onnx").is_file() and (assets / "new.json").is_file()


# A rebuilt demo sidecar may differ from the shipped one only in what depends on when and where it
# was built: the engine file's bytes (the ONNX serialisation and its embedded metadata follow the
# torch/onnx/rtpipe releases), the library versions and so the cache key, the self-check's measured
# differences (numerics of this machine's runtimes), the command and checkpoint path (as given on
# the command line), and the build time. Everything else (what the engine is) must be the same.
MAY_DIFFER = {"engine_bytes", "engine_sha256", "versions", "cache_key", "check.outputs", "command", "checkpoint.path", "built_at",
              "build_seconds"}


def test_a_rebuilt_demo_sidecar_has_every_field_of_the_shipped_one(tmp_path):
    from pipeline.models import BUILTIN, BUILTIN_CHECKPOINTS

    shipped = json.loads(sidecar_path(BUILTIN["demo"]).read_text())
    # the README's "Demo model" rebuild command, into a temporary folder
    engine = build(str(BUILTIN_CHECKPOINTS["demo"]), BuildOptions(format="onnx", batch="1:1:16"), tmp_path, name="demo-seg")
    rebuilt = json.loads(sidecar_path(engine).read_text())

    def compare(want: dict, got: dict, where: str = "", values: bool = True) -> list[str]:
        found = []
        for key, value in want.items():
            path = where + key
            same = values and path not in MAY_DIFFER  # below a field that may differ, only the keys must be there
            if key not in got:
                found.append(f"{path} missing")
            elif isinstance(value, dict) and isinstance(got[key], dict):
                found += compare(value, got[key], path + ".", same)
            elif same and got[key] != value:
                found.append(f"{path}: {got[key]!r:.60} (shipped {value!r:.60})")
        return found

    assert compare(shipped, rebuilt) == []
    assert (rebuilt["model"]["arch"], rebuilt["model"]["stride"]) == ("rtnet", 8)
    assert set(rebuilt["check"]["outputs"]) == set(shipped["check"]["outputs"]), "the same outputs are checked"
