"""Host <-> device copies for the GPU path.

A frame goes up once, as uint8 (a quarter of the bytes of the float input), from pinned memory
with a non-blocking copy on the uploader's own CUDA stream. Two pinned buffers take turns, so
frame N+1 is copied in while frame N is still being worked on; a buffer is refilled only once
its previous copy has finished. On the CPU the frame is used as it is (no copy).
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch


def on(stream):
    """``with on(stream):`` runs CUDA work on ``stream``; a no-op context for None (CPU)."""
    return nullcontext() if stream is None else torch.cuda.stream(stream)


class Uploader:
    """HxWx3 uint8 numpy frames -> tensors on ``device``; one per thread that uploads."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._pinned: list[torch.Tensor | None] = [None, None]
        self._copied: list[torch.cuda.Event | None] = [None, None]
        self._turn = 0

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """The frame on the device. On CUDA, work queued on ``self.stream`` after this call
        sees the copy finished; other streams must wait for that stream (see pipeline.paths.gpu)."""
        if self.stream is None:
            return torch.from_numpy(image)
        k, self._turn = self._turn, self._turn ^ 1
        buf = self._pinned[k]
        if buf is None or tuple(buf.shape) != image.shape:
            buf = self._pinned[k] = torch.empty(image.shape, dtype=torch.uint8, pin_memory=True)
        elif self._copied[k] is not None:
            self._copied[k].synchronize()  # this buffer's previous copy has left it
        np.copyto(buf.numpy(), image)
        with torch.cuda.stream(self.stream):
            out = buf.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.stream)
        self._copied[k] = done
        return out
