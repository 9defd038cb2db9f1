"""Training the demo model: cell assignment, the loss going down, the checkpoint it writes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from pipeline.demo import data  # noqa: E402
from pipeline.demo.loss import assign, losses  # noqa: E402
from pipeline.demo.scenes import CLASSES  # noqa: E402
from pipeline.demo.train import collate, main  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.models import rtnet  # noqa: E402


def cells(h, w, stride=8):
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (torch.stack([xs.flatten(), ys.flatten()], 1).float() + 0.5) * stride


def test_assignment_centre_sampling_smallest_wins_and_crowd_is_ignored():
    c = cells(8, 8)  # 64 cells on a 64x64 input
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0],   # everything: only cells near its centre learn it
                          [16.0, 16.0, 32.0, 32.0],  # inside the first: its cells learn the smaller one
                          [49.0, 1.0, 51.0, 3.0],    # holds no cell centre: gets the nearest cell
                          [40.0, 40.0, 64.0, 64.0]])  # crowd
    crowd = torch.tensor([False, False, False, True])
    index, ignored = assign(c, boxes, crowd)
    at = {(int(x), int(y)): (int(i), bool(g)) for (x, y), i, g in zip(c, index, ignored)}
    assert at[(20, 20)] == (1, False) and at[(28, 28)] == (1, False)
    assert at[(36, 36)][0] == 0 and at[(4, 4)][0] == -1  # outside 2.5 strides of the big box's centre
    assert at[(52, 4)] == (2, False)
    assert at[(60, 60)] == (-1, True) and not ignored[index >= 0].any()
    assert 3 not in index.tolist()


def test_a_few_steps_fit_one_batch():
    hw = (96, 160)
    it = data.stream(0, hw, frame_size=(320, 180))
    images, targets = collate([next(it) for _ in range(4)])
    assert images.shape == (4, 3, 96, 160) and targets[0]["masks"].shape[1:] == (24, 40)
    net = rtnet.build(list(CLASSES), imgsz=list(hw), width=8, seed=0).train()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    first = None
    for _ in range(40):
        parts = losses(net.raw(images), targets)
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
        first = first or {k: float(v.detach()) for k, v in parts.items()}
    last = {k: float(v.detach()) for k, v in parts.items()}
    assert last["total"] < 0.6 * first["total"] and last["box"] < first["box"] and last["mask"] < first["mask"]


def test_the_crossings_stream_yields_samples_of_the_right_shapes():
    hw = (96, 160)
    it = data.stream(0, hw, clips_at_once=2, clip_frames=30, frame_size=(320, 180), scene="crossings")
    samples = [next(it) for _ in range(4)]
    for s in samples:
        k = len(s.boxes)
        assert s.image.shape == (96, 160, 3) and s.image.dtype.name == "uint8"
        assert s.boxes.shape == (k, 4) and s.classes.shape == (k,) and s.crowd.shape == (k,) and s.masks.shape == (k, 24, 40)
    assert sum(len(s.boxes) for s in samples) > 0
    with pytest.raises(ValueError):
        next(data.stream(0, hw, scene="parking"))


def test_train_writes_a_checkpoint_that_records_its_recipe(tmp_path):
    out = tmp_path / "m.pt"
    assert main(["--steps", "2", "--batch", "2", "--width", "8", "--imgsz", "96", "160", "--seed", "3", "--out", str(out),
                 "--log-every", "1"]) == 0
    ckpt = torch.load(out, weights_only=True)
    t = ckpt["training"]
    assert t["seed"] == 3 and t["steps_done"] == 2 and t["config"]["width"] == 8 and t["command"].startswith("python -m pipeline.demo.train")
    model = load_model(str(out))
    assert model.info.names == CLASSES and model.info.input_hw == (96, 160)
    assert not out.with_suffix(".partial.pt").exists()
