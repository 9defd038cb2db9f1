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

from pipeline.types import EngineMeta, Fit

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

    class Residual(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.body = nn.Sequential(ConvBN(c, c), ConvBN(c, c))

        def forward(self, x):
            return x + self.body(x)

    def up(x):
        return nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")

    class RtNet(nn.Module):
        """(B, 3, H, W) RGB in 0..1 -> output0 (B, 4 + nc (+ 32), N) (, output1 (B, 32, H/4, W/4)).

        A small encoder down to /32 and a top-down path back to /8 (so each cell sees whole
        objects), then a stride-8 anchor-free head: each cell predicts distances to the box
        sides (softplus, in strides), class logits and mask coefficients; the box is returned
        as cx, cy, w, h in input pixels and the scores after sigmoid, as Ultralytics exports
        do. The prototypes come from the /4 features joined with the upsampled /8 ones.
        """

        def __init__(self, names: list[str], imgsz: int | list[int] = 320, width: int = 32, task: str = "segment"):
            super().__init__()
            hw = [imgsz, imgsz] if isinstance(imgsz, int) else list(imgsz)
            if len(hw) != 2 or any(v % 32 for v in hw):
                raise ValueError(f"imgsz {imgsz} is not a multiple of 32 (the network downsamples to /32)")
            self.names, self.imgsz, self.width, self.task = list(names), imgsz, width, task
            self.input_hw = tuple(hw)
            nc, w = len(names), width
            self.stem = nn.Sequential(ConvBN(3, w // 2, 3, 2), ConvBN(w // 2, w, 3, 2))  # /4
            self.down8 = nn.Sequential(ConvBN(w, 2 * w, 3, 2), Residual(2 * w))
            self.down16 = nn.Sequential(ConvBN(2 * w, 4 * w, 3, 2), Residual(4 * w))
            self.down32 = nn.Sequential(ConvBN(4 * w, 4 * w, 3, 2), Residual(4 * w))
            self.up16 = ConvBN(8 * w, 4 * w)
            self.up8 = nn.Sequential(ConvBN(6 * w, 2 * w), ConvBN(2 * w, 2 * w))
            self.box = nn.Conv2d(2 * w, 4, 1)
            self.cls = nn.Conv2d(2 * w, nc, 1)
            self.seg = task == "segment"
            if self.seg:
                self.coef = nn.Conv2d(2 * w, NM, 1)
                self.proto = nn.Sequential(ConvBN(3 * w, w), ConvBN(w, w), nn.Conv2d(w, NM, 1))
            nn.init.constant_(self.cls.bias, -4.6)  # scores start near 0.01: few boxes survive early on
            nn.init.constant_(self.box.bias, 1.0)

        def raw(self, images):
            """Undecoded head outputs (for training): box side logits (B, 4, N), class logits
            (B, nc, N), mask coefficients (B, 32, N) and prototypes (B, 32, H/4, W/4) (None
            for detection), and the cell centres (1, 2, N) in input pixels."""
            p4 = self.stem(images)
            p8 = self.down8(p4)
            p16 = self.down16(p8)
            p32 = self.down32(p16)
            p16 = self.up16(torch.cat([p16, up(p32)], 1))
            x = self.up8(torch.cat([p8, up(p16)], 1))
            b, _, gh, gw = x.shape
            gy, gx = torch.meshgrid(torch.arange(gh, device=x.device), torch.arange(gw, device=x.device), indexing="ij")
            centres = (torch.stack([gx, gy]).reshape(1, 2, -1).to(x.dtype) + 0.5) * STRIDE
            if not self.seg:
                return self.box(x).flatten(2), self.cls(x).flatten(2), None, None, centres
            return self.box(x).flatten(2), self.cls(x).flatten(2), self.coef(x).flatten(2), self.proto(torch.cat([p4, up(x)], 1)), centres

        def forward(self, images):
            box, cls, coef, protos, centres = self.raw(images)
            ltrb = nn.functional.softplus(box) * STRIDE  # (B, 4, N)
            lo, hi = centres - ltrb[:, :2], centres + ltrb[:, 2:]
            out = torch.cat([(lo + hi) / 2, hi - lo, cls.sigmoid()] + ([coef] if self.seg else []), 1)
            return (out, protos) if self.seg else (out,)

    return RtNet


def build(names: list[str], imgsz: int | list[int] = 320, width: int = 32, task: str = "segment", seed: int = 0):
    """A new network with seeded random weights."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _blocks()(names, imgsz, width, task).eval()


def config(net) -> dict:
    return {"names": net.names, "imgsz": net.imgsz, "width": net.width, "task": net.task}


def save(net, path: str | Path, training: dict | None = None) -> Path:
    """Write a weights-only checkpoint; ``training`` (command, config, seed ...) is stored with it."""
    import torch

    path = Path(path)
    ckpt = {"format": FORMAT, "version": VERSION, "arch": "rtnet", "config": config(net), "state_dict": net.state_dict()}
    if training:
        ckpt["training"] = training
    torch.save(ckpt, path)
    return path


def checked_config(config: object, label: str) -> dict:
    """A checkpoint's ``config``, checked before anything is allocated for it (a crafted file
    could ask for a network of any size); ValueError says which field is wrong."""
    from pydantic import BaseModel, ConfigDict, Field, ValidationError, conlist

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        names: conlist(str, min_length=1, max_length=10_000)
        imgsz: int | conlist(int, min_length=2, max_length=2) = 320
        width: int = Field(32, ge=4, le=512)
        task: str = Field("segment", pattern="^(detect|segment)$")

    try:
        checked = Config.model_validate(config).model_dump()
    except ValidationError as exc:
        e = exc.errors()[0]
        raise ValueError(f"checkpoint '{label}': config field '{'.'.join(map(str, e['loc'])) or '(top level)'}': {e['msg']}") from None
    sizes = checked["imgsz"] if isinstance(checked["imgsz"], list) else [checked["imgsz"]]
    if not all(32 <= v <= 4096 and v % STRIDE == 0 for v in sizes):
        raise ValueError(f"checkpoint '{label}': config imgsz {checked['imgsz']} is not a multiple of {STRIDE} from 32 to 4096")
    return checked


def from_checkpoint(ckpt: dict, label: str, imgsz: int | tuple[int, int] | None = None):
    """A loaded checkpoint dict -> the network (eval mode) at ``imgsz`` (default: the trained
    size; the weights do not depend on it); a one-line error on a bad file."""
    if ckpt.get("version") != VERSION or ckpt.get("arch") != "rtnet":
        raise ValueError(f"checkpoint '{label}': rtpipe checkpoint version {ckpt.get('version')} / arch {ckpt.get('arch')!r} "
                         "is not known to this rtpipe")
    size = list(imgsz) if isinstance(imgsz, tuple) else imgsz
    net = build(**{**checked_config(ckpt.get("config"), label), **({"imgsz": size} if size else {})})
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
        detail = (str(exc).splitlines() + ["", ""])[1].strip()[:160]
        raise ValueError(f"checkpoint '{label}': weights do not fit the network {ckpt['config']} ({detail})") from exc
    return net.eval()


def meta(net) -> EngineMeta:
    return EngineMeta(family="yolo", arch="rtnet", task=net.task, names=tuple(net.names), stride=STRIDE, fit=Fit(net.input_hw),
                      outputs=("output0", "output1") if net.seg else ("output0",))
