"""TensorRT builder and runtime: run only where the tensorrt package and a CUDA GPU exist."""

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("tensorrt") is None:
    pytest.skip("tensorrt is not installed (pip install 'rtpipe[tensorrt]' on a machine with an NVIDIA GPU)", allow_module_level=True)
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU: TensorRT engines are built and run on one", allow_module_level=True)

from pipeline.build import BuildOptions, build  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402
from tests.conftest import assert_same_detections, pick_conf, yolo_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(yolo_checkpoint(tmp_path_factory.mktemp("trt") / "rtnet.pt", imgsz=320, width=32))


def images(n=4):
    return [SyntheticScene(640, 480, s).render(3 * s) for s in range(n)]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_matches_the_checkpoint(ckpt, tmp_path, precision):
    engine = build(ckpt, BuildOptions(format="tensorrt", precision=precision, batch="1:2:4", device="cuda"), tmp_path)
    assert engine.suffix == ".engine" and (tmp_path / "timing.cache").exists()
    probe = load_model(ckpt, backend="torch", conf=1e-3, iou=0.5)
    conf = pick_conf(np.concatenate([d.confidence for d in probe.predict(images())]))
    ref = load_model(ckpt, backend="torch", conf=conf, iou=0.5).predict(images())
    trt_model = load_model(str(engine), device="cuda", conf=conf, iou=0.5)
    assert trt_model.info.backend == "tensorrt"
    for _ in range(3):  # the second call at a batch size captures a CUDA graph, the third replays it
        got = trt_model.predict(images())
    if precision == "fp32":
        for i, (r, g) in enumerate(zip(ref, got)):
            assert_same_detections(r, g, f"tensorrt fp32 image {i}")
    else:  # fp16: the same objects, scores within fp16 error
        assert sum(len(g) for g in got) == pytest.approx(sum(len(r) for r in ref), rel=0.1)


def test_tensorrt_cache_through_run(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("RTPIPE_ENGINE_DIR", str(tmp_path))
    model = load_model(ckpt, backend="tensorrt", device="cuda")
    assert model.info.backend == "tensorrt" and list(tmp_path.glob("*.engine"))
