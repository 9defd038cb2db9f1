"""The whole GPU path in the pipeline (here on CPU tensors) against the CPU path, same engine."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.paths import CpuPath, Item, path_for, runs_on_gpu
from pipeline.paths.gpu import GpuPath
from pipeline.runtime import Pipeline
from pipeline.types import Frame
from tests.conftest import assert_same
from tests.fakes import Frames, Keep


def run(model, images, path, batch=2):
    sink = Keep()
    m = Pipeline(Frames(images), model, [sink], batch=batch, path=path).run(handle_sigint=False)
    return m, sink.got


def test_gpu_path_gives_the_cpu_paths_detections_and_pictures(demo_torch, demo_frames):
    m_cpu, cpu = run(demo_torch, demo_frames, CpuPath(demo_torch))
    m_gpu, gpu = run(demo_torch, demo_frames, GpuPath(demo_torch))
    assert m_cpu["path"] == "cpu" and m_gpu["path"] == "gpu"
    assert [i for i, _, _ in gpu] == [i for i, _, _ in cpu] == list(range(len(demo_frames)))
    assert sum(len(d) for _, d, _ in cpu) >= 10
    for (_, dg, ig), (_, dc, ic), frame in zip(gpu, cpu, demo_frames):
        # the letterbox may round a pixel the other way: boxes within 0.5 px, scores within 1e-2
        assert len(dg) == len(dc)
        np.testing.assert_allclose(dg.xyxy, dc.xyxy, atol=0.5)
        np.testing.assert_allclose(dg.confidence, dc.confidence, atol=1e-2)
        np.testing.assert_array_equal(dg.class_id, dc.class_id)
        assert ig.shape == ic.shape == frame.shape and ig.dtype == np.uint8
        changed_g, changed_c = (ig != frame).any(2), (ic != frame).any(2)
        assert (changed_g != changed_c).mean() < 0.01  # the same pixels drawn on (masks, boxes, labels)
        assert np.abs(ig.astype(int) - ic.astype(int)).mean() < 1.0


def test_gpu_path_decodes_exactly_as_its_own_decoder(demo_torch, demo_frames):
    """Given the same input tensor, the pipeline's GPU decode equals the numpy decoder (tight tolerances)."""
    path = GpuPath(demo_torch)

    items = [Item(Frame(f, i, 0.0, 0.0)) for i, f in enumerate(demo_frames[:2])]
    for it in items:
        path.preprocess(it)
    outputs = path.infer(items)
    path.postprocess(outputs, items)
    host = {k: v.numpy() for k, v in outputs.items()}
    want = demo_torch.postprocess(host, [it.transform for it in items])
    for it, w in zip(items, want):
        assert_same(it.detections, w)


def test_the_gpu_path_is_chosen_only_for_tensor_backends_on_cuda(demo_torch, tiny_model):
    assert not runs_on_gpu(demo_torch) and isinstance(path_for(demo_torch), CpuPath)  # torch, but on the CPU
    assert not runs_on_gpu(tiny_model)  # ONNX Runtime
    with pytest.raises(ValueError, match="does not run on tensors"):
        GpuPath(tiny_model)
