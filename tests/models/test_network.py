"""Network: a module is exported to ONNX once, on first need, at the batch its metadata fixes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402

from pipeline.models.network import Network  # noqa: E402
from pipeline.types import EngineMeta, Fit  # noqa: E402
from tests.fakes import tiny_graph  # noqa: E402


@pytest.mark.parametrize("batch, axis", [(None, "batch"), (2, 2)])
def test_a_module_is_exported_once_at_its_metadatas_batch(batch, axis):
    meta = EngineMeta("yolo", "detect", ("a",), Fit((32, 48)), ("output0",), batch=batch)
    network = Network(meta, "tiny", module=tiny_graph())
    blob = network.to_onnx()
    assert network.to_onnx() is blob  # kept: the next backend reuses it
    shape = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    assert shape == [axis, 3, 32, 48]


def test_an_onnx_file_is_used_as_it_is(tmp_path):
    path = tmp_path / "m.onnx"
    network = Network(EngineMeta("yolo", "detect", ("a",), Fit((32, 48)), ("output0",)), "m", onnx=path)
    assert network.to_onnx() is path  # no module, no export
