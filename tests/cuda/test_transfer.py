"""Uploads: on the CPU the frame itself, on CUDA a device copy per frame (where a GPU exists)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.cuda.transfer import Uploader

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")


def test_cpu_upload_is_the_frame_itself():
    frame = np.zeros((4, 6, 3), np.uint8)
    t = Uploader("cpu")(frame)
    frame[0, 0, 0] = 7
    assert t.dtype == torch.uint8 and tuple(t.shape) == (4, 6, 3) and int(t[0, 0, 0]) == 7


@cuda
def test_cuda_upload():
    up = Uploader("cuda")
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(4)]
    got = [up(f) for f in frames]
    torch.cuda.synchronize()
    assert [int(t[0, 0, 0]) for t in got] == [0, 1, 2, 3] and got[0].is_cuda
