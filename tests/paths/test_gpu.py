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


def test_the_gpu_path_fits_frames_of_every_aspect_as_the_cpu_path_does(tmp_path):
    """A YOLO checkpoint on the torch backend takes rect inputs: on the GPU path (CPU tensors
    here) frames of 16:9, 4:3 and portrait in one batch get the CPU path's inputs and detections."""
    pytest.importorskip("torch")
    from pipeline.loader import load_model
    from pipeline.sources import SyntheticScene
    from tests.conftest import pick_conf, yolo_checkpoint

    # scores spread out (at gain 1 they sit within 0.005 of 0.5, so the GPU path's fit, within
    # 1.5/255 of OpenCV's, reorders them) and a threshold in a wide gap between them
    ckpt = str(yolo_checkpoint(tmp_path / "net.pt", imgsz=320, gain=3.0))
    images = [SyntheticScene(w, h, 4).render(3) for w, h in ((480, 270), (400, 300), (270, 480))]
    conf = pick_conf(np.concatenate([d.confidence for d in load_model(ckpt, backend="torch", conf=1e-3).predict(images)]))
    model = load_model(ckpt, backend="torch", conf=conf)
    assert model.info.fit.mode == "rect"
    gpu_path = GpuPath(model)
    shapes = []
    for image in images:
        item = Item(Frame(image, 0, 0.0, 0.0))
        gpu_path.preprocess(item)
        host, _ = model.preprocess(image)
        assert tuple(item.tensor.shape) == host.shape and np.abs(item.tensor.numpy() - host).max() <= 1.5 / 255
        shapes.append(host.shape)
    assert len(set(shapes)) == 3
    _, cpu = run(model, images, CpuPath(model), batch=3)
    _, gpu = run(model, images, GpuPath(model), batch=3)
    assert sum(len(d) for _, d, _ in cpu) >= 5
    for (_, dg, _), (_, dc, _) in zip(gpu, cpu):  # the same set (random weights tie scores: order may differ)
        assert len(dg) == len(dc)
        for i in range(len(dc)):
            near = (np.abs(dg.xyxy - dc.xyxy[i]).max(1) <= 0.5) & (dg.class_id == dc.class_id[i])
            assert (near & (np.abs(dg.confidence - dc.confidence[i]) <= 1e-2)).any(), f"detection {i} unmatched"


def test_the_gpu_path_gives_the_cpu_paths_class_maps_and_pictures(tmp_path):
    """A semantic model on the torch backend: on the GPU path (CPU tensors here) the class maps of
    frames of three shapes in one batch agree with the CPU path's, and the tint is drawn."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from pipeline.loader import load_model
    from pipeline.models import semantic
    from pipeline.sources import SyntheticScene
    from tests.conftest import spread_scores

    net = semantic.build("lraspp_mobilenet_v3_large")
    spread_scores(net, seed=2)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    model = load_model("torchvision:lraspp_mobilenet_v3_large", backend="torch", weights=tmp_path / "w.pth", imgsz=96)
    images = [SyntheticScene(w, h, 4).render(3) for w, h in ((480, 270), (400, 300), (270, 480))]
    _, cpu = run(model, images, CpuPath(model), batch=3)
    _, gpu = run(model, images, GpuPath(model), batch=3)
    for (_, dg, ig), (_, dc, _), frame in zip(gpu, cpu, images):
        assert dg.class_map.frame_hw == frame.shape[:2]
        assert float((dg.class_map.ids == dc.class_map.ids).mean()) >= 0.99  # device resize rounds within a grey level
        assert ig.shape == frame.shape and np.abs(ig.astype(int) - frame.astype(int)).mean() > 5  # tinted
