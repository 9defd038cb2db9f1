"""CUDA graphs: their CPU behaviour here (the engine called each time, a failed capture's fallback),
the replay where a GPU exists."""

from __future__ import annotations

import warnings

import pytest
import torch

from pipeline.cuda.graphs import CudaGraphs
from tests.fakes import BrokenStream

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")


def test_graphs_off_cuda_call_the_engine_each_time():
    calls = []
    run = CudaGraphs(lambda x: calls.append(x.shape) or {"y": x * 2}, "cpu", "test")
    for _ in range(3):
        assert torch.equal(run(torch.ones(2, 3))["y"], torch.full((2, 3), 2.0))
    assert len(calls) == 3 and not run.graphs


def test_a_failed_capture_falls_back_with_one_warning(monkeypatch):
    run = CudaGraphs(lambda x: {"y": x + 1}, "cpu", "engine.pt2")
    monkeypatch.setattr(CudaGraphs, "enabled", property(lambda self: True))
    monkeypatch.setattr(torch.cuda, "Stream", BrokenStream)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [run(torch.zeros(1))["y"].item() for _ in range(4)]
    assert outs == [1.0] * 4
    lines = [str(w.message) for w in caught]
    assert len(lines) == 1 and "engine.pt2: CUDA graph capture failed" in lines[0] and "running without a graph" in lines[0]
    assert list(run.failed) == [((1,), torch.float32)]


@cuda
def test_cuda_graph_replay():
    lin = torch.nn.Linear(4, 3).cuda()
    run = CudaGraphs(lambda x: {"y": lin(x)}, "cuda", "linear")
    x = torch.randn(2, 4, device="cuda")
    for _ in range(3):
        torch.testing.assert_close(run(x)["y"], lin(x))
    assert len(run.graphs) == 1
