"""PyTorch eager backend: runs a family's graph module as it is (the reference path)."""

from __future__ import annotations

import numpy as np

from pipeline.backends import run_in_chunks


class TorchBackend:
    name = "torch"
    captures_own_graphs = False

    def __init__(self, module, input_hw: tuple[int, int], output_names: list[str], max_batch: int | None = None, device: str = "cpu"):
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device '{device}' asked for, but this torch sees no CUDA GPU: use --device cpu")
        self.torch = torch
        self.device = torch.device(device)
        self.tensor_device = str(self.device)
        self.module = module.to(self.device).eval()
        self.input_hw = tuple(input_hw)
        self.output_names = list(output_names)
        self.max_batch = max_batch

    def _run_tensor(self, batch):
        with self.torch.inference_mode():
            out = self.module(batch)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        return dict(zip(self.output_names, out))

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        out = self._run_tensor(self.torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        return {k: v.detach().cpu().numpy() for k, v in out.items()}

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return run_in_chunks(self._run, batch, self.max_batch)

    def infer_tensor(self, batch) -> dict:
        """(B, 3, H, W) float32 tensor on ``device`` -> {name: tensor on ``device``}."""
        return run_in_chunks(self._run_tensor, batch, self.max_batch)
