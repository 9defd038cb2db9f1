"""rtpipe's own YOLO-layout networks, defined in the project and saved as weights-only checkpoints.

They emit the yolo layout (see ``pipeline.models.yolo``), so the production decoder and every
backend run them unchanged, and they need neither Ultralytics nor unpickling to load.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` reads::

    {"format": "rtpipe-checkpoint", "version": 1, "arch": "rtnet",
     "config": {"names": [...], "imgsz": 320, "width": 32, "task": "segment"},
     "state_dict": {...}}
"""

from __future__ import annotations

from pathlib import Path

FORMAT = "rtpipe-checkpoint"
VERSION = 1
NM = 32  # mask coefficients / prototype channels
STRIDE = 8


def is_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def _blocks():
    import torch
    from torch import nn

    class ConvBN(nn.Sequential):
        def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1):
            super().__init__(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())

    class RtNet(nn.Module):
        """(B, 3, H, W) RGB in 0..1 -> output0 (B, 4 + nc (+ 32), N) (, output1 (B, 32, H/4, W/4)).

        A stride-8 anchor-free head: each cell predicts distances to the box sides
        (softplus, in strides), class logits and mask coefficients; the box is returned as
        cx, cy, w, h in input pixels and the scores after sigmoid, as Ultralytics exports do.
        """

        def __init__(self, names: list[str], imgsz: int = 320, width: int = 32, task: str = "segment"):
            super().__init__()
            if imgsz % STRIDE:
                raise ValueError(f"imgsz {imgsz} is not a multiple of the stride {STRIDE}")
            self.names, self.imgsz, self.width, self.task = list(names), imgsz, width, task
            nc, w = len(names), width
            self.stem = nn.Sequential(ConvBN(3, w // 4, 3, 2), ConvBN(w // 4, w // 2, 3, 2))  # /4
            self.body = nn.Sequential(ConvBN(w // 2, w, 3, 2), ConvBN(w, w), ConvBN(w, w))  # /8
            self.box = nn.Conv2d(w, 4, 1)
            self.cls = nn.Conv2d(w, nc, 1)
            self.seg = task == "segment"
            if self.seg:
                self.coef = nn.Conv2d(w, NM, 1)
                self.proto = nn.Sequential(ConvBN(w // 2, w // 2), nn.Conv2d(w // 2, NM, 1))
            g = imgsz // STRIDE
            gy, gx = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
            self.register_buffer("grid", (torch.stack([gx, gy]).reshape(1, 2, -1).float() + 0.5) * STRIDE, persistent=False)

        def forward(self, images):
            p4 = self.stem(images)
            x = self.body(p4)
            b = x.shape[0]
            ltrb = nn.functional.softplus(self.box(x).flatten(2)) * STRIDE  # (B, 4, N)
            lo, hi = self.grid - ltrb[:, :2], self.grid + ltrb[:, 2:]
            parts = [(lo + hi) / 2, hi - lo, self.cls(x).flatten(2).sigmoid()]
            if not self.seg:
                return (torch.cat(parts, 1),)
            parts.append(self.coef(x).reshape(b, NM, -1))
            return torch.cat(parts, 1), self.proto(p4)

    return RtNet


def build(names: list[str], imgsz: int = 320, width: int = 32, task: str = "segment", seed: int = 0):
    """A new network with seeded random weights."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _blocks()(names, imgsz, width, task).eval()


def config(net) -> dict:
    return {"names": net.names, "imgsz": net.imgsz, "width": net.width, "task": net.task}


def save(net, path: str | Path) -> Path:
    import torch

    path = Path(path)
    torch.save({"format": FORMAT, "version": VERSION, "arch": "rtnet", "config": config(net), "state_dict": net.state_dict()}, path)
    return path


def from_checkpoint(ckpt: dict, label: str, imgsz: int | None = None):
    """A loaded checkpoint dict -> the network (eval mode) at ``imgsz`` (default: the trained
    size; the weights do not depend on it); a one-line error on a bad file."""
    if ckpt.get("version") != VERSION or ckpt.get("arch") != "rtnet":
        raise ValueError(f"checkpoint '{label}': rtpipe checkpoint version {ckpt.get('version')} / arch {ckpt.get('arch')!r} "
                         "is not known to this rtpipe")
    net = build(**{**ckpt["config"], **({"imgsz": imgsz} if imgsz else {})})
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
        detail = (str(exc).splitlines() + ["", ""])[1].strip()[:160]
        raise ValueError(f"checkpoint '{label}': weights do not fit the network {ckpt['config']} ({detail})") from exc
    return net.eval()


def meta(net) -> dict:
    from pipeline.preprocess import Fit

    size = net.imgsz
    return {
        "family": "yolo",
        "arch": "rtnet",
        "task": net.task,
        "names": list(net.names),
        "stride": STRIDE,
        "fit": Fit((size, size)).to_dict(),
        "outputs": ["output0", "output1"] if net.seg else ["output0"],
    }
