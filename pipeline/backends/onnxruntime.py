"""ONNX Runtime backend (CPU by default; CUDA/TensorRT execution providers when installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from pipeline.backends import run_in_chunks


def providers_for(device: str) -> list[str]:
    """Execution providers for a device name: "cpu", or "cuda[:N]" (needs onnxruntime-gpu)."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError(
                f"device '{device}' needs onnxruntime-gpu (CUDAExecutionProvider); this onnxruntime has {ort.get_available_providers()}"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"device '{device}' is not known: use cpu or cuda")


class OnnxRuntimeBackend:
    name = "onnxruntime"
    tensor_device = None  # numpy in, numpy out
    captures_own_graphs = False

    def __init__(self, path: str | Path | bytes, providers: list[str] | None = None, threads: int = 0):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT threads would spin and take the cores the other stages need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.dynamic_block_base", "4")
        try:
            self.session = ort.InferenceSession(
                path if isinstance(path, bytes) else str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ValueError(f"{self._label(path)}: not a loadable ONNX file ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"{self._label(path)}: expected one NCHW image input, found {[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        b, _, h, w = inputs[0].shape
        if isinstance(h, int) != isinstance(w, int):
            raise ValueError(f"{self._label(path)}: the input's height and width must both be fixed or both be dynamic, "
                             f"found {inputs[0].shape}")
        self.input_hw = (h, w) if isinstance(h, int) else None  # None: any size (the graph has dynamic height and width)
        self.max_batch = b if isinstance(b, int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: batch})))

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return run_in_chunks(self._run, batch, self.max_batch, exact=self.max_batch is not None)

    @staticmethod
    def _label(path) -> str:
        return "the exported graph" if isinstance(path, bytes) else str(path)

    def infer_tensor(self, batch) -> dict:
        raise TypeError("ONNX Runtime runs on numpy arrays, not tensors (tensor_device is None)")

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)
