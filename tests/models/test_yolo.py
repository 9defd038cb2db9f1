import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.loader import load_model
from pipeline.models import ModelError
from pipeline.models.yolo import DecodeSettings, DenseDecoder, parse_names
from pipeline.ops import box_iou
from pipeline.ops.masks import rle_decode
from pipeline.sources import SyntheticScene
from pipeline.types import FitTransform
from tests.fakes import Pickled

META = FitTransform(frame_hw=(64, 128), input_hw=(64, 64), scale_x=0.5, scale_y=0.5, pad_x=0, pad_y=16)


def raw(cands, nc=3, nm=0):
    """cands: list of (cx, cy, w, h, class, score[, coef...]) -> output0 (1, 4+nc+nm, N)."""
    out = np.zeros((1, 4 + nc + nm, len(cands)), np.float32)
    for j, c in enumerate(cands):
        out[0, :4, j] = c[:4]
        out[0, 4 + c[4], j] = c[5]
        out[0, 4 + nc :, j] = c[6:] if nm else []
    return out


def test_decode_threshold_nms_and_scaling():
    cands = [
        (32, 32, 20, 20, 0, 0.9),
        (33, 32, 20, 20, 0, 0.8),  # same object, same class: suppressed
        (33, 32, 20, 20, 1, 0.7),  # same place, other class: kept
        (10, 20, 4, 4, 2, 0.2),    # under conf
    ]
    d = DenseDecoder(3, DecodeSettings(conf=0.25, iou=0.5))({"output0": raw(cands)}, [META])[0]
    assert d.class_id.tolist() == [0, 1]
    assert d.confidence.tolist() == pytest.approx([0.9, 0.7])
    # input (22, 22, 42, 42) -> frame ((22-0)/0.5, (22-16)/0.5, ...) = (44, 12, 84, 52)
    assert d.xyxy[0].tolist() == pytest.approx([44, 12, 84, 52])
    assert d.mask is None


@pytest.mark.parametrize(
    "settings, expected",
    [
        (DecodeSettings(conf=0.25, iou=0.5, agnostic=True), [0]),
        (DecodeSettings(conf=0.25, iou=0.5, classes=(1,)), [1]),
        (DecodeSettings(conf=0.25, iou=0.5, max_det=1), [0]),
        (DecodeSettings(conf=0.95, iou=0.5), []),
    ],
)
def test_decode_options(settings, expected):
    cands = [(32, 32, 20, 20, 0, 0.9), (33, 32, 20, 20, 1, 0.7)]
    d = DenseDecoder(3, settings)({"output0": raw(cands)}, [META])[0]
    assert d.class_id.tolist() == expected


def test_decode_masks_follow_coefficients():
    cands = [(32, 32, 20, 20, 0, 0.9, 1.0, 0.0), (16, 40, 10, 10, 1, 0.8, -1.0, 0.0)]
    protos = np.ones((1, 2, 16, 16), np.float32)
    d = DenseDecoder(3, DecodeSettings())({"output0": raw(cands, nm=2), "output1": protos}, [META])[0]
    dense = d.mask.dense()
    # negative coefficient: sigmoid < 0.5 everywhere, an empty mask, so (as in Ultralytics) no detection
    assert dense.shape == (1, 64, 128) and d.class_id.tolist() == [0]
    x1, y1, x2, y2 = d.xyxy[0].astype(int)
    assert dense[0, y1:y2, x1:x2].all() and dense[0].sum() == (x2 - x1) * (y2 - y1)


def test_decode_rejects_too_few_channels():
    with pytest.raises(ValueError, match="fewer than 4 \\+ 80"):
        DenseDecoder(80, DecodeSettings())({"output0": np.zeros((1, 10, 5), np.float32)}, [META])


@pytest.mark.parametrize(
    "value, expected",
    [("{0: 'person', 1: 'car'}", ["person", "car"]), ("{1: 'b', 0: 'a'}", ["a", "b"]), ("['x', 'y']", ["x", "y"])],
)
def test_parse_names(value, expected):
    assert parse_names(value) == expected


@pytest.mark.parametrize("value", ["__import__('os').system('echo hi')", "42", "{0: 'a'"])
def test_parse_names_never_evaluates(value):
    with pytest.raises(ValueError, match="names"):
        parse_names(value)


# ---------------------------------------------------------------------------- Ultralytics parity

DATA = Path(__file__).parents[1] / "data"
FIXTURE = DATA / "yolo11n-seg-320"


def scene_image() -> np.ndarray:
    return SyntheticScene(480, 270, 7).render(4)  # the image make_ultralytics_fixture.py used


def assert_matches_reference(det, ref: dict) -> None:
    """Every reference detection: IoU >= 0.95, same class, score within 1e-3; masks as
    ``assert_mask_close`` checks them, and IoU >= 0.9 where they are large.

    Masks are looser than boxes by design: Ultralytics upsamples the prototype mix to the whole
    frame and crops it to the box; rtpipe resamples only the box's pixels,
    so the two can disagree by a pixel at the mask's edge.
    """
    rb = np.array(ref["xyxy"], np.float32)
    assert len(det.xyxy) == len(rb)
    iou = box_iou(rb, det.xyxy)
    for i in range(len(rb)):
        ok = (iou[i] >= 0.95) & (det.class_id == ref["classes"][i]) & (np.abs(det.confidence - ref["scores"][i]) <= 1e-3)
        assert ok.any(), f"reference detection {i} unmatched"
        assert_mask_close(rle_decode(ref["masks"][i]), det.mask.dense(int(np.flatnonzero(ok)[0])), f"mask {i}", min_iou=0.9)


def assert_mask_close(want: np.ndarray, got: np.ndarray, label: str, min_iou: float | None, radius: int = 1) -> None:
    """Two (H, W) bool masks differ only within ``radius`` pixels of either one's edge; with
    ``min_iou``, masks of 500 pixels or more also overlap by at least that IoU."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    edges = np.zeros(want.shape, np.uint8)
    for m in (want.astype(np.uint8), got.astype(np.uint8)):
        edges |= m & ~cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    near_edge = cv2.dilate(edges, kernel).astype(bool)
    assert not ((want ^ got) & ~near_edge).any(), f"{label} differs away from its edges"
    union = (want | got).sum()
    if min_iou is not None and union >= 500:
        assert (want & got).sum() / union >= min_iou, label


@pytest.mark.parity
def test_ultralytics_onnx_export_matches_its_predictor():
    """The committed ONNX is Ultralytics' own export; the reference is its predictor's output."""
    ref = json.loads(FIXTURE.with_suffix(".reference.json").read_text())
    model = load_model(str(FIXTURE.with_suffix(".onnx")), conf=ref["conf"], iou=ref["iou"])
    info = model.info
    assert (info.family, info.task, info.input_hw, len(info.names)) == ("yolo", "segment", (320, 320), 80)
    assert len(ref["scores"]) >= 20
    assert_matches_reference(model.predict([scene_image()])[0], ref)


def test_pickled_checkpoint_needs_trust(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"model": Pickled()}, path)
    with pytest.raises(ModelError, match="pickled Python objects.*--trust-checkpoint"):
        load_model(str(path))


def test_state_dict_is_pointed_to_torchvision(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "sd.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ModelError, match="not an Ultralytics model checkpoint.*torchvision:<arch> --weights"):
        load_model(str(path))


@pytest.fixture(scope="module")
def ultralytics_fixture(tmp_path_factory):
    """A fresh fixture made by the installed ultralytics (skipped where it is not installed)."""
    pytest.importorskip("ultralytics")
    from tests.data.make_ultralytics_fixture import main

    out = tmp_path_factory.mktemp("ultralytics")
    main(out)
    return out / "yolo11n-seg-320"


@pytest.mark.parity
def test_pt_checkpoint_matches_ultralytics_predictor(ultralytics_fixture):
    """With the package installed: the .pt on the torch backend vs Ultralytics' predictor on it.

    ``rect=False`` makes the predictor letterbox to the full square as a fixed-size engine does
    (its default for .pt pads only to a stride multiple)."""
    from ultralytics import YOLO

    from tests.data.make_ultralytics_fixture import as_reference

    ref = json.loads(ultralytics_fixture.with_suffix(".reference.json").read_text())
    pt = str(ultralytics_fixture.with_suffix(".pt"))
    res = YOLO(pt).predict(scene_image(), imgsz=320, conf=ref["conf"], iou=ref["iou"], rect=False, retina_masks=True, verbose=False)[0]
    live = as_reference(res)
    for backend in ("torch", "onnxruntime"):
        model = load_model(pt, backend=backend, imgsz=320, conf=ref["conf"], iou=ref["iou"], trust_checkpoint=True, rect=False)
        assert_matches_reference(model.predict([scene_image()])[0], live)


def test_pt_raw_outputs_agree_between_backends(ultralytics_fixture):
    pt = str(ultralytics_fixture.with_suffix(".pt"))
    a = load_model(pt, backend="torch", trust_checkpoint=True, imgsz=320)
    b = load_model(pt, backend="onnxruntime", trust_checkpoint=True, imgsz=320)
    x, _ = a.preprocess(scene_image())
    ra, rb = a.infer(x[None]), b.infer(x[None])
    for k in ra:
        np.testing.assert_allclose(ra[k], rb[k], atol=1e-4, rtol=1e-5, err_msg=k)  # boxes are in pixels: rtol for fp32


@pytest.mark.parametrize("fmt", ["onnx", "aoti"])
def test_pt_builds_engines_that_match_ultralytics_predictor(ultralytics_fixture, tmp_path, fmt):
    from ultralytics import YOLO

    from pipeline.build import BuildOptions, build
    from tests.data.make_ultralytics_fixture import as_reference

    ref = json.loads(ultralytics_fixture.with_suffix(".reference.json").read_text())
    pt = str(ultralytics_fixture.with_suffix(".pt"))
    res = YOLO(pt).predict(scene_image(), imgsz=320, conf=ref["conf"], iou=ref["iou"], rect=False, retina_masks=True, verbose=False)[0]
    engine = build(pt, BuildOptions(format=fmt, imgsz=320), tmp_path, trust_checkpoint=True)
    model = load_model(str(engine), conf=ref["conf"], iou=ref["iou"])
    assert_matches_reference(model.predict([scene_image()])[0], as_reference(res))


SHAPES = {"16:9": (480, 270), "4:3": (400, 300), "portrait": (270, 480)}  # (w, h)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch", "aoti"])
@pytest.mark.parametrize("aspect", list(SHAPES))
def test_pt_checkpoint_matches_ultralytics_predictor_in_its_default_rect_mode(ultralytics_fixture, aspect, backend):
    """Ultralytics' predictor pads a checkpoint's input only to a multiple of the stride (rect,
    its default); rtpipe does the same on ONNX Runtime (an export with dynamic height and width),
    torch, and AOTInductor (an engine built for the frame's shape on first use)."""
    from ultralytics import YOLO

    from tests.data.make_ultralytics_fixture import as_reference

    ref = json.loads(ultralytics_fixture.with_suffix(".reference.json").read_text())
    pt = str(ultralytics_fixture.with_suffix(".pt"))
    w, h = SHAPES[aspect]
    image = SyntheticScene(w, h, 7).render(4)
    res = YOLO(pt).predict(image, imgsz=320, conf=ref["conf"], iou=ref["iou"], retina_masks=True, verbose=False)[0]
    model = load_model(pt, backend=backend, imgsz=320, conf=ref["conf"], iou=ref["iou"], trust_checkpoint=True)
    tensor, _ = model.preprocess(image)
    assert model.info.fit.mode == "rect" and max(tensor.shape[1:]) == 320 and min(tensor.shape[1:]) < 320
    live = as_reference(res)
    assert len(live["scores"]) >= 5, "too few reference detections to compare"
    assert_matches_reference(model.predict(image)[0], live)


@pytest.mark.parametrize("aspect", list(SHAPES))
def test_rect_inputs_give_the_checkpoints_own_outputs(tmp_path, aspect):
    """rtpipe's own YOLO-layout checkpoint: ONNX Runtime on a rect input = the torch module on it."""
    torch = pytest.importorskip("torch")
    from tests.conftest import yolo_checkpoint

    ckpt = yolo_checkpoint(tmp_path / "net.pt", imgsz=320)
    w, h = SHAPES[aspect]
    image = SyntheticScene(w, h, 3).render(2)
    rect, square = load_model(str(ckpt)), load_model(str(ckpt), rect=False)
    x, meta = rect.preprocess(image)
    xs, _ = square.preprocess(image)
    assert x.shape[1:] == {"16:9": (192, 320), "4:3": (256, 320), "portrait": (320, 192)}[aspect] and xs.shape[1:] == (320, 320)
    module = load_model(str(ckpt), backend="torch")
    with torch.no_grad():
        want = [t.numpy() for t in module.backend.module(torch.from_numpy(x[None]))]
    got = rect.infer(x[None])
    np.testing.assert_allclose(got["output0"], want[0], atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(got["output1"], want[1], atol=1e-4)


def test_a_checkpoint_takes_a_non_square_input_size(tmp_path):
    """--imgsz H,W: a 16:9 camera gets a 384x640 input, square or fitted, and a built engine of that shape."""
    pytest.importorskip("torch")
    from pipeline.build import BuildOptions, build
    from pipeline.config import build_config
    from tests.conftest import yolo_checkpoint

    ckpt = yolo_checkpoint(tmp_path / "net.pt", imgsz=320)
    image = SyntheticScene(640, 360, 3).render(2)
    fixed = load_model(str(ckpt), imgsz=(384, 640), rect=False)
    assert fixed.info.input_hw == (384, 640) and fixed.preprocess(image)[0].shape == (3, 384, 640)
    fitted = load_model(str(ckpt), imgsz=(384, 640))
    assert fitted.preprocess(SyntheticScene(480, 360, 3).render(2))[0].shape == (3, 384, 512)  # 4:3 inside the 384x640 bound
    options = BuildOptions(format="onnx", imgsz=build_config(None, {"imgsz": "384,640"}).imgsz)
    engine = build(str(ckpt), options, tmp_path / "e")
    assert "384x640" in engine.name and load_model(str(engine)).info.input_hw == (384, 640)
