"""rtpipe's own YOLO-layout networks: weights-only checkpoints that the yolo family loads."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pipeline.loader import load_model  # noqa: E402
from pipeline.models import ModelError, resolve, rtnet  # noqa: E402
from pipeline.models import yolo as yolo_family  # noqa: E402
from tests.conftest import yolo_checkpoint  # noqa: E402


def test_checkpoint_round_trip_and_layout(tmp_path):
    path = yolo_checkpoint(tmp_path / "n.pt", imgsz=96, width=8)
    ckpt = torch.load(path, weights_only=True)  # no pickled code inside
    assert rtnet.is_checkpoint(ckpt) and ckpt["config"]["imgsz"] == 96
    graph = resolve(str(path))
    assert graph.meta.arch == "rtnet" and graph.source == path
    with torch.no_grad():
        out0, out1 = graph.module(torch.rand(2, 3, 96, 96))
    assert out0.shape == (2, 4 + 4 + 32, (96 // 8) ** 2) and out1.shape == (2, 32, 24, 24)
    shapes = {"output0": list(out0.shape), "output1": list(out1.shape)}
    assert yolo_family.check_outputs(graph.meta, shapes) is None
    scores = out0[:, 4:8]
    assert float(scores.min()) >= 0 and float(scores.max()) <= 1
    w, h = out0[:, 2], out0[:, 3]
    assert float(w.min()) > 0 and float(h.min()) > 0


def test_input_size_is_a_load_option(tmp_path):
    path = yolo_checkpoint(tmp_path / "n.pt", imgsz=96, width=8)
    model = load_model(str(path), backend="torch", imgsz=128, conf=0.0)
    assert model.info.input_hw == (128, 128)
    assert len(model.predict([np.zeros((100, 200, 3), np.uint8)])) == 1


def test_foreign_weights_are_refused(tmp_path):
    path = yolo_checkpoint(tmp_path / "n.pt", imgsz=96, width=8)
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["width"] = 16
    torch.save(ckpt, tmp_path / "wrong.pt")
    with pytest.raises(ModelError, match="weights do not fit the network"):
        load_model(str(tmp_path / "wrong.pt"))
