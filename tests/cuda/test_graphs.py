"""Uploads and CUDA graphs: their CPU behaviour here, the CUDA behaviour where a GPU exists."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from pipeline.cuda.graphs import CudaGraphs
from pipeline.cuda.transfer import Uploader

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")


def test_cpu_upload_is_the_frame_itself():
    frame = np.zeros((4, 6, 3), np.uint8)
    t = Uploader("cpu")(frame)
    frame[0, 0, 0] = 7
    assert t.dtype == torch.uint8 and tuple(t.shape) == (4, 6, 3) and int(t[0, 0, 0]) == 7


def test_graphs_off_cuda_call_the_engine_each_time():
    calls = []
    run = CudaGraphs(lambda x: calls.append(x.shape) or {"y": x * 2}, "cpu", "test")
    for _ in range(3):
        assert torch.equal(run(torch.ones(2, 3))["y"], torch.full((2, 3), 2.0))
    assert len(calls) == 3 and not run.graphs


def test_a_failed_capture_falls_back_with_one_warning(monkeypatch):
    class Broken:
        def __init__(self):
            raise RuntimeError("operation not permitted when stream is capturing")

    run = CudaGraphs(lambda x: {"y": x + 1}, "cpu", "engine.pt2")
    monkeypatch.setattr(CudaGraphs, "enabled", property(lambda self: True))
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no CUDA stream here")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [run(torch.zeros(1))["y"].item() for _ in range(4)]
    assert outs == [1.0] * 4
    lines = [str(w.message) for w in caught]
    assert len(lines) == 1 and "engine.pt2: CUDA graph capture failed" in lines[0] and "running without a graph" in lines[0]
    assert list(run.failed) == [((1,), torch.float32)]


@cuda
def test_cuda_upload_and_graph_replay():
    up = Uploader("cuda")
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(4)]
    got = [up(f) for f in frames]
    torch.cuda.synchronize()
    assert [int(t[0, 0, 0]) for t in got] == [0, 1, 2, 3] and got[0].is_cuda
    lin = torch.nn.Linear(4, 3).cuda()
    run = CudaGraphs(lambda x: {"y": lin(x)}, "cuda", "linear")
    x = torch.randn(2, 4, device="cuda")
    for _ in range(3):
        torch.testing.assert_close(run(x)["y"], lin(x))
    assert len(run.graphs) == 1
