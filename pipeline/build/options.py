"""Build options: validated once, turned into the cache key, the engine name and the rebuild command."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.config import Device, InputSize
from pipeline.types import EngineMeta, InputError


class BuildError(InputError):
    """A build that cannot be made; one line saying what to change."""


class CheckFailed(BuildError):
    """A built engine that does not compute what its checkpoint computes (nothing is kept)."""


@dataclass(frozen=True)
class Batch:
    """The batch sizes an engine accepts: fixed (min = opt = max) or a range with an optimum."""

    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str | int) -> Batch:
        text = str(text).strip()
        m = re.fullmatch(r"(\d+)(?::(\d+):(\d+))?", text)
        if not m:
            raise ValueError(f"batch '{text}': give N (fixed) or MIN:OPT:MAX, e.g. 1:4:8")
        lo, opt, hi = (int(m[1]),) * 3 if m[2] is None else (int(m[1]), int(m[2]), int(m[3]))
        if not 1 <= lo <= opt <= hi <= 1024:
            raise ValueError(f"batch '{text}': need 1 <= MIN <= OPT <= MAX <= 1024")
        return cls(lo, opt, hi)

    @property
    def fixed(self) -> bool:
        return self.min == self.max

    def label(self) -> str:
        return str(self.max) if self.fixed else f"{self.min}-{self.opt}-{self.max}"

    def to_dict(self) -> dict:
        return {"min": self.min, "opt": self.opt, "max": self.max}

    def __str__(self) -> str:
        return str(self.max) if self.fixed else f"{self.min}:{self.opt}:{self.max}"

    def check_sizes(self) -> list[int]:
        """Batch sizes the self-check runs: the fixed size, or the range's ends."""
        return [self.max] if self.fixed else sorted({self.min, self.max})


class BuildOptions(BaseModel):
    """Everything that changes what a build produces (the cache key is made of these)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    format: Literal["onnx", "aoti", "tensorrt"] = "onnx"
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    imgsz: InputSize | None = Field(None, description="input size, N or (H, W) (default: the checkpoint's)")
    batch: Batch = Batch(1, 1, 1)
    device: Device = "cpu"
    workspace: float | None = Field(None, gt=0, description="TensorRT workspace limit, GiB")
    opt_level: int = Field(3, ge=0, le=5, description="TensorRT builder optimisation level")
    opset: int = Field(17, ge=13, le=21)
    calib: str | None = Field(None, description="INT8 calibration frames: a folder of images or a video")
    calib_frames: int = Field(64, ge=8, le=10_000)
    accept_accuracy_loss: bool = False

    @field_validator("batch", mode="before")
    @classmethod
    def _batch(cls, v):
        return v if isinstance(v, Batch) else Batch.parse(v)

    def key_dict(self) -> dict:
        """The options an engine's contents depend on (for the sidecar and the cache key)."""
        d = self.model_dump(exclude={"accept_accuracy_loss"})
        d["batch"] = self.batch.to_dict()
        if self.precision != "int8":
            d.pop("calib"), d.pop("calib_frames")
        if self.format != "tensorrt":
            d.pop("workspace"), d.pop("opt_level")
        return d

    def cli_args(self) -> list[str]:
        import shlex

        args = ["--format", self.format, "--precision", self.precision, "--batch", str(self.batch), "--device", self.device]
        if self.imgsz:
            args += ["--imgsz", str(self.imgsz) if isinstance(self.imgsz, int) else f"{self.imgsz[0]},{self.imgsz[1]}"]
        if self.format == "tensorrt":
            args += ["--opt-level", str(self.opt_level)] + (["--workspace", f"{self.workspace:g}"] if self.workspace else [])
        if self.opset != 17:
            args += ["--opset", str(self.opset)]
        if self.precision == "int8":
            args += ["--calib", shlex.quote(str(self.calib)), "--calib-frames", str(self.calib_frames)]
            if self.accept_accuracy_loss:
                args.append("--accept-accuracy-loss")
        return args

    def check_against(self, meta: EngineMeta, has_module: bool) -> None:
        """Refuse combinations that cannot be built, before any work is done."""
        fmt, prec, dev = self.format, self.precision, self.device
        if fmt == "tensorrt" and not dev.startswith("cuda"):
            raise BuildError("TensorRT engines are built on the GPU they run on: add --device cuda")
        if fmt == "aoti" and not has_module:
            raise BuildError("--format aoti compiles a PyTorch module: build it from the checkpoint, not from an ONNX file")
        if fmt == "aoti" and meta.kind == "rcnn":
            raise BuildError(f"{meta.arch}: torch.export cannot trace two-stage models (data-dependent shapes in the RPN and RoI heads): "
                             "use --format onnx")
        if fmt == "aoti" and prec == "int8":
            raise BuildError("int8 is built for --format onnx or tensorrt (Q/DQ graphs); for aoti use fp32 or fp16")
        if fmt == "aoti" and prec == "fp16" and not dev.startswith("cuda"):
            raise BuildError("fp16 AOTInductor engines need --device cuda (CPU half-precision kernels are slower than fp32): "
                             "use fp32 on the CPU")
        if prec == "int8" and not self.calib:
            raise BuildError("int8 needs calibration frames: add --calib PATH (a folder of images or a video)")
        if dev.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise BuildError(f"--device {dev}: this torch sees no CUDA GPU; build on the machine that will run the engine")
        fixed = meta.batch
        if fixed is not None and (self.batch.min, self.batch.max) != (fixed, fixed):
            raise BuildError(f"{meta.arch or meta.family} graphs are exported at batch {fixed}: use --batch {fixed}")
