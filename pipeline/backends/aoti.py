"""AOTInductor backend: runs a ``.pt2`` package made by ``rtpipe build --format aoti`` (needs only torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.backends import run_in_chunks
from pipeline.types import EngineMeta


class AotiBackend:
    name = "aoti"
    captures_own_graphs = False

    def __init__(self, path: str | Path, meta: EngineMeta, device: str = "cpu"):
        import torch
        from torch._inductor import aoti_load_package

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device '{device}' asked for, but this torch sees no CUDA GPU: use --device cpu")
        self.torch = torch
        self.device = torch.device(device)
        self.tensor_device = str(self.device)
        try:
            index = self.device.index if self.device.index is not None else (0 if self.device.type == "cuda" else -1)
            self.runner = aoti_load_package(str(path), device_index=index)
        except Exception as exc:
            first = (str(exc).splitlines() or [""])[0][:160]
            raise ValueError(f"'{path}': not a loadable AOTInductor package ({exc.__class__.__name__}: {first})") from exc
        self.input_hw = meta.fit.input_hw
        self.output_names = list(meta.outputs)
        self.exact = meta.batch is not None
        self.max_batch = meta.batch or meta.batch_max

    def _run_tensor(self, batch):
        with self.torch.inference_mode():
            out = self.runner(batch)
        return dict(zip(self.output_names, out))

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        out = self._run_tensor(self.torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device))
        return {k: v.cpu().numpy() for k, v in out.items()}

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return run_in_chunks(self._run, batch, self.max_batch, exact=self.exact)

    def infer_tensor(self, batch) -> dict:
        """(B, 3, H, W) float32 tensor on ``device`` -> {name: tensor on ``device``}."""
        return run_in_chunks(self._run_tensor, batch, self.max_batch, exact=self.exact)
