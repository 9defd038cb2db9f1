"""ONNX export: bytes ONNX Runtime opens, a dynamic or fixed batch axis, the engine metadata carried inside."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402

from pipeline.models.export import META_KEY, to_onnx  # noqa: E402
from pipeline.types import EngineMeta, Fit  # noqa: E402
from tests.fakes import tiny_graph  # noqa: E402

# stride as a numpy integer, as a family's describe() may leave it: the export must still write JSON
META = EngineMeta("yolo", "detect", ("a",), Fit((64, 96)), ("output0",), arch="tiny", layout="dense", stride=np.int64(8))


def session(blob: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(blob, providers=["CPUExecutionProvider"])


def images(n: int) -> np.ndarray:
    return np.random.default_rng(n).random((n, 3, 64, 96), dtype=np.float32)


def test_export_opens_in_onnx_runtime_and_computes_the_module():
    module = tiny_graph()
    sess = session(to_onnx(module, META))
    assert [i.name for i in sess.get_inputs()] == ["images"] and [o.name for o in sess.get_outputs()] == ["output0"]
    x = images(3)
    (got,) = sess.run(["output0"], {"images": x})
    with torch.no_grad():
        (want,) = module(torch.from_numpy(x))
    assert got.shape == (3, 5, 64, 96)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-5)


def test_batch_none_gives_a_dynamic_batch_axis():
    sess = session(to_onnx(tiny_graph(), META))
    for edge in (sess.get_inputs()[0], sess.get_outputs()[0]):
        assert isinstance(edge.shape[0], str), edge.shape  # a named (symbolic) axis
        assert edge.shape[1:] == ([3, 64, 96] if edge.name == "images" else [5, 64, 96])
    for n in (1, 4):
        assert sess.run(None, {"images": images(n)})[0].shape[0] == n


def test_a_fixed_batch_is_fixed():
    sess = session(to_onnx(tiny_graph(), META, batch=2))
    assert sess.get_inputs()[0].shape == [2, 3, 64, 96] and sess.get_outputs()[0].shape == [2, 5, 64, 96]
    assert sess.run(None, {"images": images(2)})[0].shape == (2, 5, 64, 96)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        sess.run(None, {"images": images(3)})


def test_the_engine_metadata_reads_back():
    blob = to_onnx(tiny_graph(), META)
    props = {p.key: p.value for p in onnx.load_from_string(blob).metadata_props}
    assert EngineMeta.from_dict(json.loads(props[META_KEY])) == META
    assert session(blob).get_modelmeta().custom_metadata_map[META_KEY] == props[META_KEY]  # what the loader reads
