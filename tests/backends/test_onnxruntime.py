import numpy as np
import pytest

from pipeline.backends import Backend
from pipeline.backends.onnxruntime import OnnxRuntimeBackend
from pipeline.models import BUILTIN
from tests.conftest import one_node_onnx


def test_named_outputs_with_batch_axis():
    be = OnnxRuntimeBackend(BUILTIN["tiny-seg"])
    assert isinstance(be, Backend)
    out = be.infer(np.zeros((2, 3, 320, 320), np.float32))
    assert set(out) == {"output0", "output1"}
    assert out["output0"].shape == (2, 40, 1600) and out["output1"].shape == (2, 32, 80, 80)
    assert be.max_batch is None and be.metadata()["task"] == "segment"


def test_fixed_batch_engine_runs_larger_batches_in_chunks(tmp_path):
    be = OnnxRuntimeBackend(one_node_onnx(tmp_path / "b1.onnx", "Neg", [1, 3, 8, 8], [1, 3, 8, 8]))
    x = np.random.default_rng(0).random((3, 3, 8, 8), dtype=np.float32)
    assert be.max_batch == 1
    np.testing.assert_array_equal(be.infer(x)["output0"], -x)


def test_a_dynamic_spatial_size_is_taken_and_a_half_dynamic_one_refused(tmp_path):
    one_node_onnx(tmp_path / "dyn.onnx", "Neg", [1, 3, "h", "w"], [1, 3, "h", "w"])
    backend = OnnxRuntimeBackend(tmp_path / "dyn.onnx")
    assert backend.input_hw is None  # any size: the rect fit's graphs
    assert backend.infer(np.ones((1, 3, 4, 6), np.float32))["output0"].shape == (1, 3, 4, 6)
    one_node_onnx(tmp_path / "half.onnx", "Neg", [1, 3, 320, "w"], [1, 3, 320, "w"])
    with pytest.raises(ValueError, match="both be fixed or both be dynamic"):
        OnnxRuntimeBackend(tmp_path / "half.onnx")


def test_run_in_chunks_pads_a_fixed_batch():
    from pipeline.backends import run_in_chunks

    calls = []

    def run(x):
        calls.append(len(x))
        return {"y": x.sum(axis=(1, 2, 3))}

    batch = np.arange(5 * 3 * 2 * 2, dtype=np.float32).reshape(5, 3, 2, 2)
    out = run_in_chunks(run, batch, 2, exact=True)
    assert calls == [2, 2, 2] and np.array_equal(out["y"], batch.sum(axis=(1, 2, 3)))
    calls.clear()
    assert len(run_in_chunks(run, batch[:1], 4, exact=False)["y"]) == 1 and calls == [1]
    calls.clear()
    assert len(run_in_chunks(run, batch[:1], 4, exact=True)["y"]) == 1 and calls == [4]
