import numpy as np
import pytest

from pipeline.loader import load_model
from pipeline.models.tiny import build
from pipeline.sources import SyntheticScene

pytestmark = pytest.mark.parity  # the shipped file must be what the code makes, whatever the installed libraries


def test_regenerated_model_matches_the_shipped_one(tmp_path, tiny_model):
    """The shipped stand-in is what `python -m pipeline.models.tiny` produces."""
    path = tmp_path / "tiny.onnx"
    build(str(path))
    fresh = load_model(str(path))
    frame = SyntheticScene(640, 360, 5).render(7)
    t, _ = fresh.preprocess(frame)
    a, b = fresh.infer(t[None]), tiny_model.infer(t[None])
    for k in ("output0", "output1"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-4)


def test_tiny_model_gives_a_few_detections_per_frame(tiny_model):
    counts = [len(tiny_model.predict([SyntheticScene(1280, 720, s).render(i)])[0]) for s in (11, 12) for i in (0, 40)]
    assert all(1 <= c <= 20 for c in counts), counts
