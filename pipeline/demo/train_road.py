"""Train the demo's road model (semantic segmentation of the generated scenes):
``python -m pipeline.demo.train_road``.

Frames of ``--seeds`` clips (from seed 2,000,000) are rendered at 640x360, fitted as the model's input is at run time
(the short side resized to 360, antialiased), with their label maps scaled alike (each input
pixel takes the class of the frame pixel its centre falls in); a RoadNet is trained on them
(Adam, cross-entropy weighted towards the rare classes) and exported as the bundled ONNX
``pipeline/models/assets/demo-road.onnx`` (dynamic height and width; metadata: family semantic,
the ``SEMANTIC`` class names, the fit). Prints mIoU on a held-back clip at the end.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.demo.scenes import SEMANTIC, Scene
from pipeline.models.rtseg import RoadNet
from pipeline.models.semantic import _centres
from pipeline.preprocess.host import prepare
from pipeline.types import EngineMeta, Fit

ASSET = Path(__file__).resolve().parents[1] / "models" / "assets" / "demo-road.onnx"
SHORT = 360
TRAIN_SEEDS = 2_000_000  # as the detector's (1,000,000 up): every small seed is an unseen clip
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def meta() -> EngineMeta:
    fit = Fit((SHORT, 320), "shortside", SHORT, SHORT * 4, MEAN, stride=1)
    return EngineMeta(family="semantic", task="semantic", names=SEMANTIC, fit=fit, outputs=("class_map",), arch="rtseg",
                      kind="rtseg", mean=MEAN, std=STD)


def samples(seeds: list[int], frames: int, every: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, H, W) float32 inputs and (N, H, W) uint8 labels of every ``every``-th frame."""
    fit = meta().fit
    xs, ys = [], []
    for seed in seeds:
        scene = Scene(seed, 640, 360)
        for f in range(frames):
            if f % every:
                scene.skip()
                continue
            shot = scene.render_next()
            x, t = prepare(shot.image, fit)
            h, w = x.shape[1:]
            xs.append(x)
            ys.append(shot.labels[_centres(360, h)][:, _centres(640, w)])
    return np.stack(xs), np.stack(ys)


def confusion(pred: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(truth.ravel() * k + pred.ravel(), minlength=k * k).reshape(k, k)


def miou(conf: np.ndarray) -> tuple[float, list[float]]:
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    ious = [float(i / u) if u else float("nan") for i, u in zip(inter, union)]
    return float(np.nanmean(ious)), ious


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="train the demo's road model")
    ap.add_argument("--seeds", type=int, default=40, help="training clips (seeds 2,000,000..)")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--every", type=int, default=6)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ASSET)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    t0 = time.time()
    x, y = samples(list(range(TRAIN_SEEDS, TRAIN_SEEDS + args.seeds)), args.frames, args.every)
    print(f"{len(x)} samples in {time.time() - t0:.0f} s", flush=True)
    share = np.bincount(y.ravel(), minlength=len(SEMANTIC)) / y.size
    weight = torch.tensor((1 / np.maximum(share, 1e-4)) ** 0.5, dtype=torch.float32)
    weight /= weight.mean()
    net = RoadNet(len(SEMANTIC))
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=args.steps, pct_start=0.1)
    rng = np.random.default_rng(0)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for step in range(args.steps):
        idx = torch.from_numpy(rng.choice(len(x), min(args.batch, len(x)), replace=False))
        xb, yb = xt[idx], yt[idx].long()
        if rng.random() < 0.5:  # mirror: the world is left-right symmetric
            xb, yb = xb.flip(-1), yb.flip(-1)
        loss = torch.nn.functional.cross_entropy(net((xb - mean) / std)["out"], yb, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} {time.time() - t0:.0f} s", flush=True)
    net.eval()
    xv, yv = samples([7, 8], 150, 10)  # held-back clips (the demo's default seed is 7)
    with torch.no_grad():
        pred = net((torch.from_numpy(xv) - mean) / std)["out"].argmax(1).numpy()
    m, ious = miou(confusion(pred, yv.astype(np.int64), len(SEMANTIC)))
    print("held-back mIoU", round(m, 4), {n: round(i, 4) for n, i in zip(SEMANTIC, ious)}, flush=True)
    from pipeline.models.export import to_onnx
    from pipeline.models.semantic import graph

    args.out.write_bytes(to_onnx(graph(net, meta()), meta()))
    torch.save(net.state_dict(), args.out.with_suffix(".pt"))
    print(f"wrote {args.out} in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
