"""Train the demo model on generated scenes: ``python -m pipeline.demo.train``.

The defaults are the recipe behind the bundled weights (pipeline/models/assets/demo-seg.pt);
the checkpoint records the command, the full config and the seed under "training". One data
worker renders clips while the main process trains on 2 threads; progress and losses are
printed every ``--log-every`` steps. Ctrl-C stops early and still writes the weights (the
run is then recorded as stopped at that step).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.demo import data
from pipeline.demo.loss import losses
from pipeline.demo.scenes import CLASSES
from pipeline.models import rtnet
from pipeline.preprocess.host import to_tensor

DEFAULT_OUT = Path("demo-train") / "demo-seg.pt"  # never the shipped weights: copy them there on purpose


class Samples(torch.utils.data.IterableDataset):
    def __init__(self, seed: int, input_hw: tuple[int, int], scene: str = "drive"):
        self.seed, self.input_hw, self.scene = seed, input_hw, scene

    def __iter__(self):
        import cv2

        cv2.setNumThreads(1)
        torch.set_num_threads(1)
        return data.stream(self.seed, self.input_hw, scene=self.scene)


def collate(samples: list[data.Sample]):
    images = torch.from_numpy(np.stack([to_tensor(s.image) for s in samples]))
    targets = [{"boxes": torch.from_numpy(s.boxes), "classes": torch.from_numpy(s.classes), "crowd": torch.from_numpy(s.crowd),
                "masks": torch.from_numpy(s.masks)} for s in samples]
    return images, targets


class Ema:
    """Exponential moving average of the weights (and BatchNorm statistics); the average is what ships."""

    def __init__(self, net, decay: float = 0.9995, ramp: int = 500):
        self.net, self.decay, self.ramp, self.updates = copy.deepcopy(net).eval(), decay, ramp, 0

    @torch.no_grad()
    def update(self, net) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.ramp))
        for avg, cur in zip(self.net.state_dict().values(), net.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(cur.detach(), alpha=1 - d)
            else:
                avg.copy_(cur)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pipeline.demo.train",
                                 description="Train the demo detection + segmentation model on generated scenes.")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"checkpoint to write (default {DEFAULT_OUT})")
    ap.add_argument("--steps", type=int, default=3000, help="optimizer steps (default 3000)")
    ap.add_argument("--batch", type=int, default=16, help="frames per step (default 16)")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (default 3e-3)")
    ap.add_argument("--width", type=int, default=24, help="network width (default 24)")
    ap.add_argument("--imgsz", type=int, nargs=2, default=[288, 512], metavar=("H", "W"),
                    help="network input (default 288 512: 1280x720 at 0.4)")
    ap.add_argument("--seed", type=int, default=0, help="weights and data seed (default 0)")
    ap.add_argument("--scene", choices=data.SCENES, default="drive",
                    help="generated clips to train on: drive (the driving Scene, default) or crossings (static-camera CrossingScene)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training (default 2)")
    ap.add_argument("--log-every", type=int, default=50, help="steps between progress lines (default 50)")
    ap.add_argument("--snapshot-every", type=int, default=250, help="steps between snapshots of the weights to OUT.partial.pt (default 250)")
    return ap.parse_args(argv)


def lr_at(step: int, steps: int, warmup: int = 200) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))


def train(args) -> Path:
    args.out.parent.mkdir(parents=True, exist_ok=True)  # snapshots are written beside it as training goes
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    hw = tuple(args.imgsz)
    net = rtnet.build(list(CLASSES), imgsz=list(hw), width=args.width, seed=args.seed).train()
    ema = Ema(net)
    decay = [p for p in net.parameters() if p.ndim > 1]
    rest = [p for p in net.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0.0}], lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, args.steps))
    # the worker comes from a fork server, not a fork of this process: forking a process whose thread pools (torch, ONNX
    # Runtime) hold locks can deadlock the child, and spawned workers abort in C++ destructors at exit
    loader = torch.utils.data.DataLoader(Samples(args.seed, hw, args.scene), batch_size=args.batch, collate_fn=collate, num_workers=1,
                                         prefetch_factor=4, multiprocessing_context="forkserver")
    gen = torch.Generator().manual_seed(args.seed)
    start, running, step = time.monotonic(), {}, 0
    stopped = None
    try:
        for step, (images, targets) in enumerate(loader):
            if step >= args.steps:
                break
            parts = losses(net.raw(images), targets, gen)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            sched.step()
            ema.update(net)
            for k, v in parts.items():
                running[k] = running.get(k, 0.0) + float(v.detach())
            if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
                el = time.monotonic() - start
                eta = el / (step + 1) * (args.steps - step - 1)
                avg = "  ".join(f"{k} {v / args.log_every:.3f}" for k, v in running.items())
                print(f"step {step + 1}/{args.steps}  {avg}  lr {sched.get_last_lr()[0]:.2e}  "
                      f"{args.batch * (step + 1) / el:.1f} img/s  elapsed {el / 60:.1f} min  eta {eta / 60:.1f} min", flush=True)
                running = {}
            if (step + 1) % args.snapshot_every == 0:
                rtnet.save(ema.net, args.out.with_suffix(".partial.pt"))  # to evaluate while training goes on
        step = args.steps
    except KeyboardInterrupt:
        stopped = step
        print(f"stopped at step {step}; writing the weights so far", file=sys.stderr)
    minutes = (time.monotonic() - start) / 60
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    training = {"command": "python -m pipeline.demo.train " + " ".join(sys.argv[1:]), "config": config, "seed": args.seed,
                "steps_done": step if stopped is None else stopped, "minutes": round(minutes, 1), "torch": str(torch.__version__),
                "data": f"generated {'crossing ' if args.scene == 'crossings' else ''}clips, "
                        f"seeds {data.TRAIN_SEED_BASE + args.seed * 100_000} and up, 1280x720, every 3rd frame"}
    ema.net.float()
    path = rtnet.save(ema.net, args.out, training=training)
    args.out.with_suffix(".partial.pt").unlink(missing_ok=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) after {minutes:.1f} min")
    return path


def main(argv=None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
