"""Classification family: rtpipe's top-5 (torch and ONNX Runtime backends) against torchvision's
own forward on its classification preset's input, at 16:9, 4:3, portrait and a frame smaller
than the preset's resize."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from pipeline.loader import load_model  # noqa: E402
from pipeline.models import classify  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402
from tests.conftest import spread_scores  # noqa: E402

ASPECTS = ((640, 360), (640, 480), (360, 640), (200, 150))  # 16:9, 4:3, portrait, smaller than the crop


def spread(model, gain: float, image: np.ndarray, arch: str) -> None:
    """Convolutions and linear layers re-drawn (seeded), then the last layer scaled so the logits
    on ``image`` have a standard deviation of 2: random-init classifiers give every class the
    same probability (or, re-drawn, one class all of it), which would make the comparison a
    matter of ties."""
    spread_scores(model, gain=gain)
    gen = torch.Generator().manual_seed(3)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for mod in linears:
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * (2.0 / mod.weight.shape[1]) ** 0.5)
            mod.bias.zero_()
        preset = classify._weights_enum(arch).transforms()
        logits = model(preset(torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1))[None])
        if torch.isfinite(logits).all() and logits.std() > 1e-6:
            linears[-1].weight.mul_(2.0 / logits.std())


def reference(model, arch: str, image: np.ndarray) -> np.ndarray:
    """torchvision's way: the default weights' preset (resize, centre crop, normalise) on the
    uint8 RGB tensor, the forward, softmax."""
    preset = classify._weights_enum(arch).transforms()
    t = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1)
    with torch.no_grad():
        return model(preset(t)[None]).softmax(1)[0].numpy()


@pytest.fixture(scope="module", params=list(classify.ARCHS))
def case(request, tmp_path_factory):
    """A seeded classifier whose probabilities vary on every frame (the first of a few weight
    scales where the best class is at least twice as likely as the median one, without
    saturating)."""
    arch = request.param
    images = [SyntheticScene(w, h, 3).render(5) for w, h in ASPECTS]
    for gain in (1.0, 2.0, 2.5, 3.0):
        model = classify.build(arch)
        spread(model, gain, images[0], arch)
        refs = [reference(model, arch, im) for im in images]
        if all(r.max() >= 2 * np.median(r) and r.max() <= 0.9 for r in refs):
            break
    else:
        pytest.fail(f"{arch}: no weight scale gives varied probabilities to compare")
    path = tmp_path_factory.mktemp(arch) / "w.pth"
    torch.save(model.state_dict(), path)
    return {"arch": arch, "weights": path, "images": images, "refs": refs}


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_top5_and_probabilities_match_torchvision(case, backend):
    """Probabilities within 1 % of torchvision's; the top-5 in its order wherever the order is
    clear by more than 2 %."""
    model = load_model(f"torchvision:{case['arch']}", backend=backend, weights=case["weights"])
    assert model.info.task == "classify" and len(model.info.names) == 1000 and model.info.names[0] == "tench"
    for image, ref in zip(case["images"], case["refs"]):
        x, _ = model.preprocess(image)
        # within 1 %: the preset's antialiased resize is matched to one grey level, not bit for bit
        np.testing.assert_allclose(model.infer(x[None])["probs"][0], ref, rtol=1e-2, atol=1e-5)
        labels = model.predict(image)[0].labels
        np.testing.assert_allclose(labels.confidence, ref[labels.class_id], rtol=1e-2, atol=1e-5)
        best = np.sort(ref)[::-1][:6]
        clear = best[:-1] > best[1:] * 1.02  # ranks whose order a 1 % change cannot swap
        want = np.argsort(-ref, kind="stable")[:5]
        assert [c for c, ok in zip(labels.class_id, clear) if ok] == [c for c, ok in zip(want, clear) if ok]
        assert not clear[-1] or set(labels.class_id) == set(want)


def test_classes_keeps_only_the_asked_for_classes_the_model_has():
    from pipeline.models.decoder import DecodeSettings
    from pipeline.types import EngineMeta, Fit

    meta = EngineMeta("classify", "classify", ("a", "b", "c"), Fit((8, 8), "centercrop", 8, 128), ("probs",), arch="resnet18")
    probs = np.array([[0.2, 0.5, 0.3]], np.float32)
    for classes, want in (((1, 7), [1]), ((0, 2), [2, 0]), ((9,), []), (None, [1, 2, 0])):
        labels = classify.ClassifyDecoder(meta, DecodeSettings(classes=classes)).top(probs)[0]
        assert list(labels.class_id) == want and (labels.confidence >= 0).all()


def test_bad_weights_files_are_one_line(tmp_path):
    from pipeline.models import ModelError

    (tmp_path / "x.jsonl").write_text("{}\n")
    for weights, message in ((tmp_path / "none.pth", "not found: give a state_dict saved from torchvision's resnet18"),
                             (tmp_path / "x.jsonl", "is not a plain state_dict")):
        with pytest.raises(ModelError, match=message):
            load_model("torchvision:resnet18", weights=weights)


def test_a_sliver_wider_than_the_bound_still_fits():
    """A 1x1300 crop: the short side would round to 0 under the long-side bound; it keeps one pixel."""
    from pipeline.preprocess.host import prepare, shortside_size

    fit = classify.describe("resnet18", imgsz=64).fit
    assert shortside_size((1, 1300), fit.min_size, fit.max_size)[0] >= 1
    x, _ = prepare(np.zeros((1, 1300, 3), np.uint8), fit)
    assert x.shape == (3, 64, 64)
