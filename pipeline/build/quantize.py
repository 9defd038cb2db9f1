"""INT8 by explicit quantization: Q/DQ nodes inserted by ONNX Runtime's static quantizer.

Calibrated on frames from a folder or a video (three of every four; the fourth is held back
for the accuracy check in ``check.int8_report``). Only convolutions and matrix products are
quantized. Symmetric int8 activations and per-channel
symmetric weights: the form TensorRT's explicit quantization takes, which ONNX Runtime also runs.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from pipeline.build.options import BuildError, BuildOptions
from pipeline.types import EngineMeta

# Only the heavy layers get Q/DQ nodes: the decode at the end (sigmoid, concat of box pixels with
# 0..1 scores) must stay in float, one int8 scale cannot hold both ranges.
QUANTIZED_OPS = ["Conv", "ConvTranspose", "MatMul", "Gemm"]


def quantize(onnx_bytes: bytes, meta: EngineMeta, options: BuildOptions, frames: list[np.ndarray]) -> bytes:
    """The graph with Q/DQ nodes, calibrated on ``frames`` (BGR images)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from pipeline.preprocess.host import prepare

    fit = meta.fit
    size = options.batch.max if options.batch.fixed else 1
    tensors = np.stack([prepare(f, fit)[0] for f in frames])
    usable = len(tensors) - len(tensors) % size
    if usable == 0:
        raise BuildError(f"--calib {options.calib}: {len(tensors)} calibration frames is fewer than the engine's batch {size}")

    class Frames(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(tensors[i : i + size] for i in range(0, usable, size))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    original = onnx.load_from_string(onnx_bytes)
    with tempfile.TemporaryDirectory(prefix="rtpipe-int8-") as tmp:
        raw, src, dst = Path(tmp) / "raw.onnx", Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        raw.write_bytes(onnx_bytes)
        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR  # the quantizer's advice goes to the root logger
        try:
            quant_pre_process(str(raw), str(src))  # shape inference and constant folding, as the quantizer asks
            quantize_static(str(src), str(dst), Frames(), quant_format=QuantFormat.QDQ, per_channel=True, op_types_to_quantize=QUANTIZED_OPS,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        except Exception as exc:
            raise BuildError(f"INT8 quantization failed ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})") from exc
        finally:
            root.setLevel(level)
        model = onnx.load(str(dst))
    from pipeline.models.export import set_metadata

    set_metadata(model, {p.key: p.value for p in original.metadata_props})
    return model.SerializeToString()
