"""torchvision family: rtpipe's predict (torch and ONNX Runtime backends) against torchvision's
own eval forward on the same weights and image; raw-output parity between the backends."""

import warnings
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from pipeline.loader import load_model  # noqa: E402
from pipeline.models import ModelError  # noqa: E402
from pipeline.models import torchvision as tvf  # noqa: E402
from pipeline.ops import box_iou  # noqa: E402
from pipeline.preprocess.host import torchvision_size  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402
from tests.conftest import pick_conf, spread_scores  # noqa: E402

IMGSZ = {arch: None if kind == "ssd" or "320" in arch else 384 for arch, kind in tvf.ARCHS.items()}
IOU, MAX_DET = 0.5, 100


def set_thresholds(model, conf: float) -> None:
    target = model.roi_heads if tvf.ARCHS[model.arch] == "rcnn" else model
    target.score_thresh, target.nms_thresh, target.detections_per_img = conf, IOU, MAX_DET


def reference(model, image: np.ndarray) -> dict:
    """torchvision's detections; for Mask R-CNN also ``mask_probs`` (N, 1, 28, 28), the mask
    head's probabilities before torchvision pastes them (``paste_masks_in_image``)."""
    from torchvision.models.detection import transform

    t = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255
    probs, paste = [], transform.paste_masks_in_image

    def keep(masks, boxes, img_shape, padding=1):
        probs.append(masks.clone())
        return paste(masks, boxes, img_shape, padding=padding)

    transform.paste_masks_in_image = keep
    try:
        with torch.no_grad():
            out = model([t])[0]
    finally:
        transform.paste_masks_in_image = paste
    ref = {k: v.numpy() for k, v in out.items()}
    if probs:
        ref["mask_probs"] = probs[0]
    return ref


@pytest.fixture(scope="module", params=list(tvf.ARCHS))
def case(request, tmp_path_factory):
    """One seeded checkpoint per architecture, its state_dict file, an image and the reference."""
    arch = request.param
    model = tvf.build(arch, None, IMGSZ[arch])
    model.arch = arch
    # random-init heads score every anchor alike: ties would make the comparison moot
    spread_scores(model, gain=1.6 if arch.startswith("ssdlite") else 1.0)  # its features vanish at gain 1
    path = tmp_path_factory.mktemp(arch) / "w.pth"
    torch.save(model.state_dict(), path)
    fit = tvf.describe(model, arch).fit
    ih, iw = fit.input_hw
    scene = SyntheticScene(2 * iw, 2 * ih, 3)  # twice the input: torchvision resizes it to fill the input exactly
    image = scene.render(5)
    set_thresholds(model, 1e-3)
    conf = pick_conf(reference(model, image)["scores"])
    set_thresholds(model, conf)
    ref = reference(model, image)
    assert len(ref["boxes"]) >= 10, f"{arch}: the reference gives too few detections to compare"
    return {"arch": arch, "weights": path, "image": image, "conf": conf, "ref": ref}


def load(case, backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # weights given: no random-weights warning expected
        return load_model(f"torchvision:{case['arch']}", backend=backend, weights=case["weights"], imgsz=IMGSZ[case["arch"]],
                          conf=case["conf"], iou=IOU, max_det=MAX_DET)


def assert_matches(ref: dict, det, masks_too: bool) -> None:
    rb = ref["boxes"]
    iou = box_iou(rb, det.xyxy)
    # a box clipped flat at the frame edge has no area and so no IoU: its corners must agree instead
    same_corners = np.abs(rb[:, None, :] - det.xyxy[None, :, :]).max(-1) <= 0.1
    for i in range(len(rb)):
        ok = ((iou[i] >= 0.95) | same_corners[i]) & (det.class_id == ref["labels"][i]) & (np.abs(det.confidence - ref["scores"][i]) <= 1e-3)
        assert ok.any(), f"reference detection {i} ({rb[i]}, class {ref['labels'][i]}, {ref['scores'][i]:.4f}) unmatched"
        if masks_too:
            # torchvision's mask at rtpipe's box: the boxes agree to ~1e-4 px, but the paste
            # truncates the grown box to whole pixels, so a box that close to the grid pastes a
            # pixel off, and a random-init mask head's probabilities sit near 0.5 (measured: half
            # of a 182-pixel mask moved). At the same box, the mask head and the paste must agree.
            from torchvision.models.detection.roi_heads import paste_masks_in_image

            j = int(np.flatnonzero(ok)[0])
            want = paste_masks_in_image(ref["mask_probs"][i : i + 1], torch.from_numpy(det.xyxy[j : j + 1]),
                                        det.mask.frame_hw)[0, 0].numpy() > 0.5
            got = det.mask.dense(j)
            union = (want | got).sum()
            assert union == 0 or (want & got).sum() / union >= 0.99, f"mask {i}: IoU {(want & got).sum() / union:.3f}"
    assert len(det.xyxy) == len(rb)


@pytest.mark.parity
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_predict_matches_torchvision(case, backend):
    model = load(case, backend)
    assert model.info.family == "torchvision" and model.info.backend == backend
    det = model.predict([case["image"]])[0]
    assert_matches(case["ref"], det, masks_too="masks" in case["ref"])


def test_raw_outputs_agree_between_backends(case):
    a, b = load(case, "torch"), load(case, "onnxruntime")
    x, _ = a.preprocess(case["image"])
    ra, rb = a.infer(x[None]), b.infer(x[None])
    assert ra.keys() == rb.keys()
    if tvf.ARCHS[case["arch"]] == "rcnn":
        ra, rb = _align_rows(ra, rb)
    for k in ra:  # np.allclose's tolerances: atol 1e-4 plus its default rtol 1e-5
        np.testing.assert_allclose(ra[k], rb[k], atol=1e-4, rtol=1e-5, err_msg=f"{case['arch']} output {k}")


def _align_rows(ra: dict, rb: dict) -> tuple[dict, dict]:
    """Two-stage outputs are detection lists: rows of (nearly) equal score may come in either
    order. Reorder b's rows to a's by label and nearest box, then compare element-wise."""
    order = []
    for i in range(ra["boxes"].shape[1]):
        same = rb["labels"][0] == ra["labels"][0, i]
        dist = np.where(same, np.abs(rb["boxes"][0] - ra["boxes"][0, i]).max(-1), np.inf)
        dist[order] = np.inf
        order.append(int(np.argmin(dist)))
    return ra, {k: v[:, order] for k, v in rb.items()}


def test_coco_names_match_torchvision():
    from torchvision.models.detection import RetinaNet_ResNet50_FPN_Weights

    assert tvf.coco_names() == RetinaNet_ResNet50_FPN_Weights.DEFAULT.meta["categories"]


def test_wrong_architecture_weights_are_refused(tmp_path):
    path = tmp_path / "ssd.pth"
    torch.save(tvf.build("ssdlite320_mobilenet_v3_large").state_dict(), path)
    with pytest.raises(ModelError, match=r"does not fit torchvision:fcos_resnet50_fpn: \d+ missing keys"):
        load_model("torchvision:fcos_resnet50_fpn", weights=path)


@pytest.mark.parametrize(
    "spec, weights, message",
    [
        ("torchvision:ssdlite320_mobilenet_v3_large", "missing.pth", "weights file 'missing.pth' not found"),
        ("torchvision:yolo_v1", None, "unknown torchvision architecture 'yolo_v1': choose one of"),
    ],
)
def test_bad_torchvision_specs(spec, weights, message):
    with pytest.raises(ModelError, match=message):
        load_model(spec, weights=weights)


def test_random_weights_warn():
    with pytest.warns(UserWarning, match="random weights"):
        load_model("torchvision:ssdlite320_mobilenet_v3_large", backend="torch")


def seeded(arch: str, imgsz, tmp_path):
    """A seeded torchvision model (scores spread, see spread_scores) and its saved state_dict."""
    model = tvf.build(arch, None, imgsz)
    model.arch = arch
    spread_scores(model, gain=1.6 if arch.startswith("ssdlite") else 1.0)
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    return model, path


def reference_at_a_clear_threshold(model, image: np.ndarray, label: str) -> tuple[dict, float]:
    """torchvision's detections at a threshold no score sits on (``pick_conf``), and that threshold."""
    set_thresholds(model, 1e-3)
    conf = pick_conf(reference(model, image)["scores"])
    set_thresholds(model, conf)
    ref = reference(model, image)
    assert len(ref["boxes"]) >= 10, f"{label}: too few reference detections to compare"
    return ref, conf


ONE_STAGE_FPN = [a for a, k in tvf.ARCHS.items() if k in ("retinanet", "fcos")]
ASPECTS = ((640, 480), (640, 360), (360, 640))  # 4:3, 16:9, portrait


@pytest.mark.parity
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("arch", ONE_STAGE_FPN)
def test_one_stage_inputs_follow_the_frame_and_match_torchvision_at_every_aspect(arch, backend, tmp_path):
    """RetinaNet (v1, v2) and FCOS: each frame resized as torchvision's transform does and
    padded to a multiple of 32, as its batch of one is, so the detections are its own at 4:3,
    16:9 and portrait. (GroupNorm heads see padding: in a fixed input made for another aspect,
    the v2 and FCOS heads matched none of torchvision's top detections.)"""
    model, path = seeded(arch, 384, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = load_model(f"torchvision:{arch}", backend=backend, weights=path, imgsz=384, conf=1e-3, iou=IOU, max_det=MAX_DET)
    assert fitted.info.fit.stride == 32
    for (w, h), want_hw in zip(ASPECTS, ((384, 512), (384, 640), (640, 384))):
        image = SyntheticScene(w, h, 3).render(5)
        ref, conf = reference_at_a_clear_threshold(model, image, f"{arch} {w}x{h}")
        fitted.decoder.s = replace(fitted.decoder.s, conf=conf)
        tensor, _ = fitted.preprocess(image)
        assert tensor.shape[1:] == want_hw
        assert_matches(ref, fitted.predict(image)[0], masks_too=False)


@pytest.fixture(scope="module", params=[a for a, k in tvf.ARCHS.items() if k == "rcnn"])
def two_stage(request, tmp_path_factory):
    """A seeded two-stage model, one frame per aspect, one threshold clear of every frame's
    scores (the graph bakes it in) and torchvision's detections at it."""
    arch = request.param
    model, path = seeded(arch, IMGSZ[arch], tmp_path_factory.mktemp(arch))
    images = [SyntheticScene(w, h, 3).render(5) for w, h in ASPECTS]
    set_thresholds(model, 1e-3)
    conf = clear_of_all([reference(model, im)["scores"] for im in images])
    set_thresholds(model, conf)
    refs = [reference(model, im) for im in images]
    for (w, h), ref in zip(ASPECTS, refs):
        assert len(ref["boxes"]) >= 10, f"{arch} {w}x{h}: too few reference detections to compare"
    return {"arch": arch, "weights": path, "conf": conf, "images": images, "refs": refs, "t": model.transform}


def clear_of_all(scores: list[np.ndarray]) -> float:
    """The threshold in the widest gap between any two scores of all frames that keeps 10 to 60
    detections in each frame (``pick_conf`` for several frames at once)."""
    s = np.sort(np.concatenate(scores))[::-1]
    mids, gaps = (s[:-1] + s[1:]) / 2, s[:-1] - s[1:]
    kept = np.array([[(f > m).sum() for f in scores] for m in mids]).reshape(len(mids), len(scores))
    usable = (kept.min(1) >= 10) & (kept.max(1) <= 60)
    assert usable.any(), "no threshold keeps 10 to 60 detections in every frame"
    return float(mids[np.argmax(np.where(usable, gaps, -1))])


@pytest.mark.parity
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_two_stage_inputs_follow_the_frame_and_match_torchvision_at_every_aspect(two_stage, backend):
    """Faster / Mask R-CNN: the input is the frame resized as torchvision's transform does; the
    graph pads it to a multiple of 32 and clips proposals and boxes to the resized size, as
    torchvision does, so the detections (and masks) are its own at 4:3, 16:9 and portrait."""
    c = two_stage
    rt = load_model(f"torchvision:{c['arch']}", backend=backend, weights=c["weights"], imgsz=IMGSZ[c["arch"]], conf=c["conf"],
                    iou=IOU, max_det=MAX_DET)
    assert rt.info.fit.stride == 1
    for image, ref in zip(c["images"], c["refs"]):
        tensor, _ = rt.preprocess(image)
        assert tensor.shape[1:] == torchvision_size(image.shape[:2], c["t"].min_size[-1], c["t"].max_size)
        assert_matches(ref, rt.predict(image)[0], masks_too="masks" in ref)


@pytest.mark.parity
@pytest.mark.parametrize("arch", [a for a, k in tvf.ARCHS.items() if k == "ssd"])
def test_ssd_stretches_every_aspect_as_torchvision_does(arch, tmp_path):
    """SSD resizes every frame to its fixed size (a stretch), whatever its aspect: rtpipe's
    detections are torchvision's at 4:3, 16:9 and portrait."""
    model, path = seeded(arch, None, tmp_path)
    for w, h in ((640, 480), (640, 360), (360, 640)):
        image = SyntheticScene(w, h, 3).render(5)
        ref, conf = reference_at_a_clear_threshold(model, image, f"{arch} {w}x{h}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rt = load_model(f"torchvision:{arch}", weights=path, conf=conf, iou=IOU, max_det=MAX_DET)
        assert_matches(ref, rt.predict(image)[0], masks_too=False)
