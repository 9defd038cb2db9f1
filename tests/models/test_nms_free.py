"""NMS-free layouts: YOLO26 end-to-end and RT-DETR — layout recognition, decoding, and parity
with Ultralytics' own predictor (those tests need the ultralytics package; CI installs it)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from pipeline.models.decoder import DecodeSettings
from pipeline.models.yolo import NmsFreeDecoder, check_outputs, layout_of
from pipeline.ops import box_iou
from pipeline.types import EngineMeta, Fit, FitTransform


@pytest.mark.parametrize("out0, nc, seg, head, end2end, want", [
    ([1, 84, 8400], 80, False, "Detect", False, "dense"),
    ([1, 116, 8400], 80, True, "Segment26", False, "dense"),
    ([1, 300, 6], 80, False, "Detect", True, "end2end"),
    ([1, 300, 38], 80, True, "Segment26", True, "end2end"),
    ([1, 300, 6], 80, False, None, None, "end2end"),  # no metadata: the shape decides
    ([1, 300, 84], 80, False, None, None, "rtdetr"),
    ([1, 300, 84], 80, False, "RTDETRDecoder", False, "rtdetr"),
    (["b", "k", 6], 80, False, "RTDETRDecoder", False, "rtdetr-topk"),  # Ultralytics' RT-DETR export: dynamic sizes
    ([1, 300, 6], 2, False, "RTDETRDecoder", False, "rtdetr-topk"),  # 4 + nc == 6: the head settles it
    ([1, 300, 6], 2, False, "Detect", True, "end2end"),
    ([1, 6, 2100], 2, False, "Detect", False, "dense"),
    ([1, 300, 7], 80, False, "Detect", True, None),  # fits nothing
    ([1, 300, 38], 80, False, "Detect", True, None),  # mask columns on a detect model
    ([1, 84], 80, False, None, None, None),
])
def test_layout_comes_from_shapes_and_metadata(out0, nc, seg, head, end2end, want):
    assert layout_of(out0, nc, seg, head, end2end) == want


def test_check_outputs_names_the_layouts_it_knows():
    meta = EngineMeta("yolo", "detect", ("a", "b", "c"), Fit((640, 640)), ("output0",), layout="end2end")
    assert check_outputs(meta, {"output0": [1, 300, 6]}) is None
    problem = check_outputs(meta, {"output0": [1, 300, 9]})
    assert "end-to-end" in problem and "RT-DETR" in problem and "[1, 300, 9]" in problem
    assert check_outputs(replace(meta, layout=None), {"output0": [1, 300, 6]}) is not None


META = FitTransform(frame_hw=(240, 320), input_hw=(320, 320), scale_x=1.0, scale_y=1.0, pad_x=0, pad_y=40)


def e2e_rows() -> np.ndarray:
    """Final rows, best first: x1 y1 x2 y2 (input px) score class; two overlap (same class)."""
    return np.array([[[10, 50, 110, 150, 0.9, 2], [12, 52, 112, 152, 0.8, 2], [200, 100, 300, 200, 0.7, 0],
                      [0, 0, 5, 5, 0.2, 1]]], np.float32)


def test_end_to_end_rows_are_kept_as_they_are_without_nms():
    d = NmsFreeDecoder(3, DecodeSettings(conf=0.25), "end2end", seg=False)({"output0": e2e_rows()}, [META])[0]
    assert len(d) == 3  # the overlapping pair stays: the engine's rows are final
    np.testing.assert_allclose(d.xyxy[0], [10, 10, 110, 110])  # pad_y 40 removed
    np.testing.assert_array_equal(d.class_id, [2, 2, 0])
    np.testing.assert_allclose(d.confidence, [0.9, 0.8, 0.7])


@pytest.mark.parametrize("settings, want", [
    (DecodeSettings(conf=0.25, nms=True), [0.9, 0.7]),  # NMS on request removes the overlapping row
    (DecodeSettings(conf=0.75), [0.9, 0.8]),
    (DecodeSettings(conf=0.1, classes=(0, 1)), [0.7, 0.2]),
    (DecodeSettings(conf=0.1, max_det=2), [0.9, 0.8]),
])
def test_end_to_end_settings(settings, want):
    d = NmsFreeDecoder(3, settings, "end2end", seg=False)({"output0": e2e_rows()}, [META])[0]
    np.testing.assert_allclose(d.confidence, want)


def test_end_to_end_masks_come_from_the_prototypes():
    rows = np.zeros((1, 2, 6 + 32), np.float32)
    rows[0, 0, :6] = [40, 80, 120, 160, 0.9, 1]
    rows[0, 1, :6] = [200, 80, 260, 140, 0.8, 0]
    rows[0, 0, 6], rows[0, 1, 7] = 1.0, 1.0  # each picks one prototype
    protos = np.full((1, 32, 80, 80), -1.0, np.float32)
    protos[0, 0, :, :] = 1.0  # prototype 0 is on everywhere: the first mask fills its box
    d = NmsFreeDecoder(2, DecodeSettings(conf=0.25), "end2end", seg=True)({"output0": rows, "output1": protos}, [META])[0]
    assert len(d) == 1  # the second mask is empty: no detection, as Ultralytics' predictor does
    assert d.mask.crops[0].all() and tuple(d.mask.regions[0]) == (40, 40, 120, 120)


def test_rtdetr_layouts_scale_normalised_boxes_and_pick_the_best_class():
    meta = FitTransform(frame_hw=(240, 480), input_hw=(320, 320), scale_x=320 / 480, scale_y=320 / 240, pad_x=0, pad_y=0)
    scores = np.array([[[0.1, 0.8, 0.3], [0.6, 0.2, 0.1], [0.1, 0.1, 0.2]]], np.float32)
    boxes = np.array([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.25, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1]]], np.float32)
    d = NmsFreeDecoder(3, DecodeSettings(conf=0.5), "rtdetr", seg=False)({"output0": np.concatenate([boxes, scores], 2)}, [meta])[0]
    np.testing.assert_allclose(d.xyxy, [[192, 72, 288, 168], [96, 48, 144, 72]], atol=1e-3)  # normalised x frame size
    np.testing.assert_array_equal(d.class_id, [1, 0])
    topk = np.concatenate([boxes, np.array([[[0.8], [0.6], [0.2]]]), np.array([[[1], [0], [2]]])], 2).astype(np.float32)
    t = NmsFreeDecoder(3, DecodeSettings(conf=0.5), "rtdetr-topk", seg=False)({"output0": topk}, [meta])[0]
    np.testing.assert_allclose(t.xyxy, d.xyxy, atol=1e-3)
    np.testing.assert_array_equal(t.class_id, d.class_id)


# ---- parity with Ultralytics' predictor ------------------------------------------------------


def images() -> list[np.ndarray]:
    from pipeline.demo.scenes import Scene
    from pipeline.sources import SyntheticScene

    return [SyntheticScene(480, 270, 7).render(4), next(iter(Scene(3, 640, 360).frames(1))).image, SyntheticScene(300, 400, 2).render(1)]


@pytest.fixture(scope="module")
def nms_free(tmp_path_factory):
    pytest.importorskip("ultralytics")
    from tests.data.make_nms_free_fixture import main

    return main(tmp_path_factory.mktemp("nms-free"))


def gap_threshold(scores: np.ndarray, most: int = 25) -> float:
    """A score threshold in the widest gap among the top ``most`` scores, so neither side's
    rounding can put a detection on the other side of it."""
    top = np.sort(scores)[::-1][: most + 1]
    k = int(np.argmax(top[:-1] - top[1:])) if len(top) > 1 else 0
    k = max(k, 2) if len(top) > 3 else k
    k = int(np.argmax(top[2:-1] - top[3:])) + 2 if len(top) > 4 else k  # keep at least three detections
    return float((top[k] + top[k + 1]) / 2)


def reference(cls, pt, image, conf: float, **kw):
    from tests.data.make_ultralytics_fixture import as_reference

    # iou: rtpipe's default (Ultralytics' is 0.7)
    res = cls(str(pt)).predict(image, imgsz=320, conf=conf, iou=0.45, rect=False, retina_masks=True, verbose=False, **kw)[0]
    return as_reference(res)


def assert_every_reference_detection_matched(det, ref: dict, frame_hw) -> None:
    """Every reference detection: IoU >= 0.95, same class, score within 1e-3 (boxes clipped to
    the frame, as rtpipe's are; masks differing only at their edges). Nothing of
    ours is left over, except a detection whose mask is nearly empty (< 5 % of its box):
    whether such a mask has any pixel at all depends on how the prototypes are resampled
    (Ultralytics upsamples the whole frame in two bilinear steps; rtpipe samples each box's
    pixels once), and a segmentation without a pixel is dropped by both.
    """
    h, w = frame_hw
    rb = np.array(ref["xyxy"], np.float32).reshape(-1, 4).clip(0, [w, h, w, h])
    iou = box_iou(rb, det.xyxy)
    matched, pairs = np.zeros(len(det), bool), []
    for i in range(len(rb)):
        ok = (iou[i] >= 0.95) & (det.class_id == ref["classes"][i]) & (np.abs(det.confidence - ref["scores"][i]) <= 1e-3) & ~matched
        assert ok.any(), f"reference detection {i} unmatched"
        pairs.append((i, int(np.flatnonzero(ok)[0])))
        matched[pairs[-1][1]] = True
    for j in np.flatnonzero(~matched):
        box_area = max(float(np.prod(det.xyxy[j, 2:] - det.xyxy[j, :2])), 1.0)
        assert det.mask is not None and det.mask.area()[j] < 0.05 * box_area, f"detection {j} is not in the reference"
    if ref["masks"]:
        from pipeline.ops.masks import rle_decode
        from tests.models.test_yolo import assert_mask_close

        for i, j in pairs:
            # Random-init masks are ragged (all edge), so only "differs only at edges" is meaningful; at 8
            # frame pixels per prototype cell (640x360 at 320) Ultralytics' two-step upsampling moves an edge by
            # up to 2 px against one bilinear step.
            assert_mask_close(rle_decode(ref["masks"][i]), det.mask.dense(j), f"mask {i}", min_iou=None, radius=2)


@pytest.mark.parity
@pytest.mark.parametrize("name", ["yolo26n", "yolo26n-seg"])
@pytest.mark.parametrize("end2end", [True, False])
def test_yolo26_matches_ultralytics_predictor(nms_free, name, end2end):
    from ultralytics import YOLO

    from pipeline.loader import load_model

    pt, onnx = nms_free[name], nms_free[f"{name}-{'e2e' if end2end else 'dense'}"]
    kw = {"nms": False} if end2end else {}
    engines = {"onnx": onnx} | ({"pt": pt} if end2end else {})  # a .pt runs its end-to-end head
    for image in images():
        conf = gap_threshold(np.array(reference(YOLO, pt, image, 0.01, **kw)["scores"]))
        ref = reference(YOLO, pt, image, conf, **kw)
        assert len(ref["scores"]) >= 3
        for kind, path in engines.items():
            model = load_model(str(path), conf=conf, imgsz=320 if kind == "pt" else None, trust_checkpoint=True,
                               backend="torch" if kind == "pt" else "auto")
            assert model.decoder.__class__.__name__ == ("NmsFreeDecoder" if end2end else "DenseDecoder")
            assert_every_reference_detection_matched(model.predict([image])[0], ref, image.shape[:2])


@pytest.mark.parity
def test_rtdetr_matches_ultralytics_predictor(nms_free):
    from ultralytics import RTDETR

    from pipeline.loader import load_model

    pt = nms_free["rtdetr-l"]
    models = {"onnx": load_model(str(nms_free["rtdetr-l-onnx"]), conf=0.01)}
    assert models["onnx"].decoder.layout == "rtdetr-topk" and models["onnx"].info.fit.mode == "resize"
    for image in images():
        conf = gap_threshold(np.array(reference(RTDETR, pt, image, 0.01)["scores"]))
        ref = reference(RTDETR, pt, image, conf)
        assert len(ref["scores"]) >= 3
        for path, kw in ((nms_free["rtdetr-l-onnx"], {}), (pt, {"backend": "torch", "imgsz": 320, "trust_checkpoint": True})):
            model = load_model(str(path), conf=conf, **kw)
            assert_every_reference_detection_matched(model.predict([image])[0], ref, image.shape[:2])


@pytest.mark.parametrize("fmt", ["onnx", "aoti"])
def test_builder_keeps_the_layout(nms_free, tmp_path, fmt):
    from pipeline.build import BuildOptions, build
    from pipeline.loader import load_model

    engine = build(str(nms_free["yolo26n-seg"]), BuildOptions(format=fmt, imgsz=320), tmp_path, trust_checkpoint=True)
    sidecar = json.loads(engine.with_suffix(".json").read_text())
    assert sidecar["model"]["layout"] == "end2end"
    ref = load_model(str(nms_free["yolo26n-seg"]), backend="torch", imgsz=320, trust_checkpoint=True, conf=0.3)
    got = load_model(str(engine), conf=0.3)
    image = images()[0]
    a, b = ref.predict([image])[0], got.predict([image])[0]
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.05)


def test_run_on_a_yolo26_seg_export_has_no_duplicate_boxes(nms_free, tmp_path):
    import subprocess
    import sys

    from tests.conftest import make_clip

    clip = make_clip(tmp_path / "clip.mp4", frames=8, size=(480, 272))
    js = tmp_path / "d.jsonl"
    r = subprocess.run([sys.executable, "-m", "pipeline", "run", str(clip), "--model", str(nms_free["yolo26n-seg-e2e"]),
                        "--conf", "0.3", "--json", str(js), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    frames = [json.loads(x) for x in js.read_text().splitlines()]
    assert len(frames) == 8 and sum(len(f["detections"]) for f in frames) > 0
    for f in frames:
        boxes = np.array([d["xyxy"] for d in f["detections"]], np.float32).reshape(-1, 4)
        same = np.array([d["class_id"] for d in f["detections"]])
        iou = box_iou(boxes, boxes) if len(boxes) else np.zeros((0, 0))
        dup = (iou > 0.99) & (same[:, None] == same[None, :]) & ~np.eye(len(boxes), dtype=bool)
        assert not dup.any(), "the same box twice: NMS-free rows decoded as dense candidates?"


def test_builder_builds_rtdetr(nms_free, tmp_path):
    """RT-DETR's top-k rows pass the builder's check (row to nearest row) and keep their layout and fit."""
    from pipeline.build import BuildOptions, build
    from pipeline.loader import load_model

    engine = build(str(nms_free["rtdetr-l"]), BuildOptions(format="onnx", imgsz=320), tmp_path, trust_checkpoint=True)
    model = json.loads(engine.with_suffix(".json").read_text())["model"]
    assert (model["layout"], model["fit"]["mode"]) == ("rtdetr-topk", "resize")
    image = images()[0]
    from tests.conftest import pick_conf

    def torch_at(conf):
        return load_model(str(nms_free["rtdetr-l"]), backend="torch", imgsz=320, trust_checkpoint=True, conf=conf).predict([image])[0]

    conf = pick_conf(torch_at(0.01).confidence)  # no score on the boundary: the two runtimes differ by ~1e-5
    a, b = torch_at(conf), load_model(str(engine), conf=conf).predict([image])[0]
    assert len(a) > 0
    assert_every_reference_detection_matched(b, {"xyxy": a.xyxy.tolist(), "scores": a.confidence.tolist(),
                                                 "classes": a.class_id.tolist(), "masks": []}, image.shape[:2])
