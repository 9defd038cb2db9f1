"""The graph wrapper the torchvision-based families share: [0, 1] RGB in, normalised inside the
graph with the weights' mean and std (so every backend gets the same input). Imported only by
the families' ``graph`` functions: it needs torch."""

from __future__ import annotations

import torch


class Normalised(torch.nn.Module):
    """Holds ``model`` and the normalisation; a family's subclass writes ``forward``."""

    def __init__(self, model, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std
