import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pipeline.backends import Backend
from pipeline.backends.onnxruntime import OnnxRuntimeBackend
from pipeline.models import BUILTIN


def test_named_outputs_with_batch_axis():
    be = OnnxRuntimeBackend(BUILTIN["tiny-seg"])
    assert isinstance(be, Backend)
    out = be.infer(np.zeros((2, 3, 320, 320), np.float32))
    assert set(out) == {"output0", "output1"}
    assert out["output0"].shape == (2, 40, 1600) and out["output1"].shape == (2, 32, 80, 80)
    assert be.max_batch is None and be.metadata()["task"] == "segment"


def _fixed_batch_model(path, batch=1):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 8, 8])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 3, 8, 8])
    m = helper.make_model(helper.make_graph([helper.make_node("Neg", ["images"], ["output0"])], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_fixed_batch_engine_runs_larger_batches_in_chunks(tmp_path):
    be = OnnxRuntimeBackend(_fixed_batch_model(tmp_path / "b1.onnx"))
    x = np.random.default_rng(0).random((3, 3, 8, 8), dtype=np.float32)
    assert be.max_batch == 1
    np.testing.assert_array_equal(be.infer(x)["output0"], -x)


def test_dynamic_spatial_size_is_refused(tmp_path):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, "h", "w"])
    m = helper.make_model(helper.make_graph([helper.make_node("Neg", ["images"], ["out"])], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "dyn.onnx")
    with pytest.raises(ValueError, match="input size must be fixed"):
        OnnxRuntimeBackend(tmp_path / "dyn.onnx")
