"""ONNX Runtime backend (CPU by default; CUDA/TensorRT execution providers when installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int = 0):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT threads would spin and take the cores the other stages need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.dynamic_block_base", "4")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ValueError(f"{path}: not a loadable ONNX model ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"{path}: expected one NCHW image input, found {[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        b, _, h, w = inputs[0].shape
        if not (isinstance(h, int) and isinstance(w, int)):
            raise ValueError(f"{path}: the input size must be fixed in the graph, found {inputs[0].shape}")
        self.input_hw = (h, w)
        self.max_batch = b if isinstance(b, int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.max_batch is None or len(batch) <= self.max_batch:
            return dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: batch})))
        parts = [self.infer(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        return {k: np.concatenate([p[k] for p in parts]) for k in self.output_names}

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)
