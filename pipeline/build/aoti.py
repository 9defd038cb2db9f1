"""AOTInductor: a family's graph module -> torch.export -> a compiled ``.pt2`` package (CPU or CUDA)."""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

from pipeline.build.options import BuildError, BuildOptions
from pipeline.types import EngineMeta


def compile_package(module, meta: EngineMeta, options: BuildOptions, path: Path) -> Path:
    """Export ``module`` at the engine's input size and batch range and compile it into ``path``."""
    import torch
    from torch.export import Dim

    from pipeline.build import half_precision

    h, w = meta.fit.input_hw
    b = options.batch
    device = torch.device(options.device)
    module = (half_precision(module) if options.precision == "fp16" else copy.deepcopy(module)).to(device).eval()
    # a dynamic axis is traced at a size inside its range other than 1, which export would specialise on
    n = b.max if b.fixed else min(max(2, b.opt), b.max)
    example = torch.rand(n, 3, h, w, device=device)
    dynamic = None if b.fixed else ({0: Dim("batch", min=b.min, max=b.max)},)
    label = meta.arch or meta.family
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet_inductor():
            warnings.simplefilter("ignore")
            program = torch.export.export(module, (example,), dynamic_shapes=dynamic, strict=False)
    except Exception as exc:
        raise BuildError(f"{label}: torch.export could not trace the graph ({exc.__class__.__name__}: {_first_line(exc)}); "
                         "use --format onnx (or tensorrt) for this model") from exc
    try:
        with warnings.catch_warnings(), _quiet_inductor():
            warnings.simplefilter("ignore")
            torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    except Exception as exc:
        raise BuildError(f"{label}: AOTInductor compile failed ({exc.__class__.__name__}: {_first_line(exc)}); "
                         "a C++ compiler is needed on the CPU (apt install g++), Triton on CUDA") from exc
    return path


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


class _quiet_inductor:
    """torch.export and Inductor log notices, and on a failed trace the whole graph: the BuildError says what matters."""

    def __enter__(self):
        self.loggers = [logging.getLogger(n) for n in ("torch", "torch._inductor", "torch.utils.cpp_extension")]
        self.levels = [lg.level for lg in self.loggers]
        for lg in self.loggers:
            lg.setLevel(logging.CRITICAL)

    def __exit__(self, *exc):
        for lg, level in zip(self.loggers, self.levels):
            lg.setLevel(level)
