"""Semantic family: rtpipe's class maps (torch and ONNX Runtime backends) against torchvision's
own forward on its segmentation preset's input, at 16:9, 4:3 and portrait; fixed-size inputs;
the builder's check on class maps."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from torchvision.transforms import functional as TF  # noqa: E402

from pipeline.loader import load_model  # noqa: E402
from pipeline.models import semantic  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402
from tests.conftest import spread_scores  # noqa: E402

SIZE = 160  # the short side (torchvision's weights use 520; small keeps the CPU tests quick)
ASPECTS = ((640, 360), (640, 480), (360, 640))  # 16:9, 4:3, portrait (w, h)


def reference(model, image: np.ndarray) -> np.ndarray:
    """torchvision's way: the SemanticSegmentation preset (uint8 resize of the short side,
    antialiased; normalise), the model's forward, argmax; then each frame pixel takes the class
    of the map pixel its centre falls in (nearest-exact)."""
    t = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1)
    x = TF.normalize(TF.resize(t, [SIZE], antialias=True).float() / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        ids = model(x[None])["out"].argmax(1).float()
    return torch.nn.functional.interpolate(ids[None], size=image.shape[:2], mode="nearest-exact")[0, 0].to(torch.uint8).numpy()


def varied(ids: np.ndarray) -> bool:
    share = np.bincount(ids.ravel(), minlength=256) / ids.size
    return share.max() <= 0.9 and (share > 0.01).sum() >= 3


@pytest.fixture(scope="module", params=list(semantic.ARCHS))
def case(request, tmp_path_factory):
    """A seeded model per architecture whose maps vary over the frame (random-init heads give one
    class almost everywhere: the first of a few seeded weight draws that does not), saved as a
    state_dict."""
    arch = request.param
    images = [SyntheticScene(w, h, 3).render(5) for w, h in ASPECTS]
    for seed, gain in ((1, 1.0), (2, 1.0), (1, 4.0), (3, 4.0)):
        model = semantic.build(arch)
        spread_scores(model, seed=seed, gain=gain)
        refs = [reference(model, im) for im in images]
        if all(varied(r) for r in refs):
            break
    else:
        pytest.fail(f"{arch}: no weight scale gives varied class maps to compare")
    path = tmp_path_factory.mktemp(arch) / "w.pth"
    torch.save(model.state_dict(), path)
    return {"arch": arch, "weights": path, "images": images, "refs": refs}


@pytest.mark.parity
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_class_maps_match_torchvision_at_every_aspect(case, backend):
    """At least 99.9 % of the pixels get torchvision's class, on frames of each aspect (each frame
    gets an input of its own shape: the short side resized, no padding)."""
    model = load_model(f"torchvision:{case['arch']}", backend=backend, weights=case["weights"], imgsz=SIZE)
    assert model.info.task == "semantic" and model.info.fit.per_frame and model.info.backend == backend
    for image, ref in zip(case["images"], case["refs"]):
        det = model.predict(image)[0]
        assert len(det) == 0 and det.class_map is not None and det.class_map.frame_hw == image.shape[:2]
        agree = float((det.class_map.ids == ref).mean())
        assert agree >= 0.999, f"{case['arch']} {backend} {image.shape[1]}x{image.shape[0]}: {agree:.4%} of pixels agree"


def test_a_fixed_input_places_the_frame_top_left_and_crops_it_back(tmp_path):
    """--no-rect (and built engines): one input shape; a frame of another aspect is resized to fit
    inside, the rest padded; the class map covers the frame exactly, from its part of the input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model("torchvision:lraspp_mobilenet_v3_large", imgsz=SIZE, rect=False)
    assert model.info.fit.input_hw == (SIZE, 285) and not model.info.fit.per_frame
    for w, h in ASPECTS:
        image = SyntheticScene(w, h, 1).render(2)
        x, t = model.preprocess(image)
        assert x.shape == (3, SIZE, 285) and t.pad_x == t.pad_y == 0
        assert model.predict(image)[0].class_map.frame_hw == (h, w)


def test_random_weights_warn_and_unknown_architectures_list_the_semantic_ones():
    from pipeline.models import ModelError

    with pytest.warns(UserWarning, match="random weights"):
        load_model("torchvision:lraspp_mobilenet_v3_large", imgsz=SIZE)
    with pytest.raises(ModelError, match="deeplabv3_resnet50"):
        load_model("torchvision:deeplabv3_resnet18", weights="random")


def test_the_device_decoder_gives_the_host_decoders_maps():
    """GPU path decoding (here on CPU tensors): the same class maps, for per-frame and fixed inputs."""
    from pipeline.preprocess.host import prepare

    decoder = semantic.decoder(semantic.describe("lraspp_mobilenet_v3_large", SIZE), None)
    rng = np.random.default_rng(1)
    for fit in (semantic.rect_meta(semantic.describe("lraspp_mobilenet_v3_large", SIZE)).fit,
                semantic.describe("lraspp_mobilenet_v3_large", SIZE).fit):
        transforms = [prepare(np.zeros((h, w, 3), np.uint8), fit)[1] for w, h in ASPECTS[:2]]
        hw = max(t.input_hw[0] for t in transforms), max(t.input_hw[1] for t in transforms)
        maps = rng.integers(0, 21, (2, *hw)).astype(np.uint8)
        host = decoder({"class_map": maps}, transforms)
        device = decoder.on_device()({"class_map": torch.from_numpy(maps)}, transforms)
        for h, (d, extra) in zip(host, device):
            assert extra is None and np.array_equal(h.class_map.ids, d.class_map.ids)
