"""Fixtures for the GPU path's tests: they run on CPU tensors here (and on CUDA where there is one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.demo.scenes import Scene
from pipeline.models import load_model

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="session")
def demo_frames() -> list[np.ndarray]:
    """Four 1280x720 demo-scene frames (cars, pedestrians, cyclists, signs)."""
    return [r.image for r in Scene(7).frames(40)][::10]


@pytest.fixture(scope="session")
def demo_torch() -> object:
    """The bundled demo model (detection + masks) on the torch backend, CPU."""
    return load_model("demo", backend="torch", conf=0.25)
