"""Model specs resolved to networks (builtins, presets, files, torchvision names) and the Model they load as."""

import numpy as np
import pytest

from pipeline.loader import load_model
from pipeline.models import BUILTIN, ModelError
from pipeline.sources import SyntheticScene
from tests.conftest import one_node_onnx


def test_builtin_model_metadata(tiny_model):
    info = tiny_model.info
    assert info.names == ("car", "pedestrian", "cyclist", "sign")
    assert info.input_hw == (320, 320) and info.task == "segment" and info.backend == "onnxruntime"


def test_predict_on_frames_of_two_sizes(tiny_model):
    scene = SyntheticScene(640, 360, 1)
    dets = tiny_model.predict([scene.render(0), scene.render(1)[:200, :300].copy()])
    assert len(dets) == 2
    assert dets[0].mask.frame_hw == (360, 640) and dets[1].mask.frame_hw == (200, 300)
    for d, (h, w) in zip(dets, [(360, 640), (200, 300)]):
        assert (d.xyxy[:, [0, 2]] <= w).all() and (d.xyxy[:, [1, 3]] <= h).all()
        assert (d.confidence > 0.25).all()
    assert tiny_model.predict([]) == []


def test_predict_takes_one_image_a_path_or_a_list(tiny_model, tmp_path):
    import cv2

    from pipeline.types import InputError

    img = SyntheticScene(320, 240, 2).render(4)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    want = tiny_model.predict([img])[0]
    assert len(want) > 0
    for given in (img, tmp_path / "a.png", str(tmp_path / "a.png"), [tmp_path / "a.png", img]):
        got = tiny_model.predict(given)
        assert isinstance(got, list) and len(got) == (2 if isinstance(given, list) else 1)
        np.testing.assert_allclose(got[0].xyxy, want.xyxy, atol=1e-3)
    grey = tiny_model.predict(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))  # grey and BGRA are taken too
    assert len(grey) == 1 and tiny_model.predict(cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))[0].xyxy.shape == want.xyxy.shape
    for bad, message in ((tmp_path / "none.png", "cannot read an image"), (img.astype(np.float32), "uint8"),
                         (img[:, :, :2], "HxWx3"), ("clip.mp4", "open_source or Session")):
        with pytest.raises(InputError, match=message):
            tiny_model.predict(bad)


def test_batched_inference_equals_single(tiny_model):
    frames = [SyntheticScene(320, 240, s).render(3) for s in range(3)]
    together = tiny_model.predict(frames)
    alone = [tiny_model.predict([f])[0] for f in frames]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        assert a.class_id.tolist() == b.class_id.tolist()


def test_load_refuses_garbage_and_unknown_layouts(tmp_path):
    pt = tmp_path / "m.pt"
    pt.write_bytes(b"\x80\x04junk")
    with pytest.raises(ModelError, match="pickled Python objects|not an Ultralytics model checkpoint"):
        load_model(str(pt))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a loadable ONNX file"):
        load_model(str(bad))
    with pytest.raises(ModelError, match="unknown ONNX layout .* expected an Ultralytics export"):
        load_model(str(one_node_onnx(tmp_path / "plain.onnx", "Identity", [1, 3, 64, 64], [1, 3, 64, 64])))
    named = one_node_onnx(tmp_path / "named.onnx", "Identity", [1, 3, 64, 64], [1, 3, 64, 64], names="{0: 'a'}")
    with pytest.raises(ModelError, match=r"unknown output layout: expected output0 \[B, 5, N\]"):
        load_model(str(named))
    txt = tmp_path / "m.txt"
    txt.write_text("x")
    with pytest.raises(ModelError, match="unknown file type '.txt'"):
        load_model(str(txt))


def test_preset_names_the_model(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("model: tiny-seg\nconf: 0.5\n")
    assert load_model(str(preset)).info.names == ("car", "pedestrian", "cyclist", "sign")
    preset.write_text("conf: 0.5\n")
    with pytest.raises(ModelError, match="names no model"):
        load_model(str(preset))


def test_builtin_file_is_shipped():
    assert BUILTIN["tiny-seg"].is_file() and BUILTIN["tiny-seg"].stat().st_size < 1_000_000


def test_torchvision_preset_supplies_model_and_weights(tmp_path):
    torch = pytest.importorskip("torch")
    from pipeline.models import torchvision as tvf

    torch.save(tvf.build("ssdlite320_mobilenet_v3_large").state_dict(), tmp_path / "w.pth")
    preset = tmp_path / "p.yaml"
    preset.write_text(f"model: torchvision:ssdlite320_mobilenet_v3_large\nweights: {tmp_path / 'w.pth'}\n")
    info = load_model(str(preset), backend="torch").info
    assert (info.family, info.arch, info.input_hw) == ("torchvision", "ssdlite320_mobilenet_v3_large", (320, 320))


@pytest.mark.parametrize("spec", ["torchvision:ssdlite320_mobilenet_v3_large", "m.pt", "m.pt2"])
def test_checkpoints_without_torch_say_what_to_install(tmp_path, monkeypatch, spec):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    if spec.startswith("m."):  # a checkpoint, or a built AOTInductor engine (native code on torch)
        spec = str(tmp_path / spec)
        open(spec, "wb").close()
    with pytest.raises(ModelError, match=r"needs torch: pip install 'rtpipe\[torch\]'"):
        load_model(spec)


def _bundled_copy(tmp_path, edit) -> str:
    """The bundled demo ONNX with its rtpipe metadata JSON text passed through ``edit``."""
    import onnx

    from pipeline.models import BUILTIN
    from pipeline.models.export import META_KEY

    proto = onnx.load(str(BUILTIN["demo"]))
    entry = next(p for p in proto.metadata_props if p.key == META_KEY)
    entry.value = edit(entry.value)
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    return str(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text: text[:40], r"ONNX metadata key 'rtpipe'\) is not valid JSON .*rebuild or re-export"),
        (lambda text: text.replace('"letterbox"', '"bogus"'), r"field 'fit.mode': Input should be 'letterbox'"),
        (lambda text: text.replace("[288, 512]", "[320, 512]"), r"metadata says the input is \(320, 512\), the graph takes \(288, 512\)"),
        (lambda text: text.replace('"names": [', '"names": 7, "x": ['), r"field 'names'"),
    ],
)
def test_bad_rtpipe_metadata_is_one_line_naming_what_is_wrong(tmp_path, edit, message):
    with pytest.raises(ModelError, match=message) as err:
        load_model(_bundled_copy(tmp_path, edit))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("version, refused", [("2.5.1", True), ("2.9.1+cu128", True), ("2.10.0", False), ("2.14.0", False)])
def test_checkpoints_are_refused_on_a_torch_whose_weights_only_loading_is_unsafe(tmp_path, monkeypatch, version, refused):
    torch = pytest.importorskip("torch")
    from tests.conftest import yolo_checkpoint

    ckpt = yolo_checkpoint(tmp_path / "net.pt")
    monkeypatch.setattr(torch, "__version__", version)
    if refused:
        with pytest.raises(ModelError, match=r"cannot read checkpoints safely .*pip install 'torch>=2.10'") as err:
            load_model(str(ckpt))
        assert "\n" not in str(err.value)
    else:
        assert load_model(str(ckpt)).info.family == "yolo"
