"""``rtpipe build``: a checkpoint -> an engine that checks itself, with a sidecar that describes it.

One module per step::

    options.py    BuildOptions: format, precision, input size, batch range, device, TensorRT knobs
    samples.py    sample inputs (rendered scenes) and calibration frames (a folder or a video)
    check.py      the engine against its PyTorch module: raw outputs (allclose) and, for INT8,
                  detections (box-match rate, score drift)
    aoti.py       torch.export + AOTInductor -> .pt2
    quantize.py   INT8: Q/DQ nodes by ONNX Runtime's static quantization, calibrated on frames
    sidecar.py    NAME.json: what the engine is, how it was made; the checks before loading
    cache.py      engines built on first use by ``rtpipe run --backend aoti|tensorrt``

ONNX export is the family's graph module through ``pipeline.models.export.to_onnx``; the
TensorRT builder lives with its runtime in ``pipeline.backends.tensorrt`` (the only module
that imports tensorrt).
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pipeline.build.options import BuildError, BuildOptions
from pipeline.sidecar import SCHEMA, cache_key, checkpoint_sha256, gpu, sha256, sidecar_path, versions
from pipeline.sidecar import write as write_sidecar
from pipeline.types import EngineMeta

__all__ = ["BuildError", "BuildOptions", "build", "build_graph", "engine_name"]

SUFFIX = {"onnx": ".onnx", "aoti": ".pt2", "tensorrt": ".engine"}
Progress = Callable[[str], None]


def build(spec: str, options: BuildOptions | None = None, out: str | Path = "engines", weights=None, trust_checkpoint: bool = False,
          name: str | None = None, progress: Progress | None = None, overwrite: bool = False) -> Path:
    """Build ``spec`` (checkpoint, torchvision:<arch>, ONNX or preset) into ``out``; returns the engine path.

    The engine is checked against the PyTorch module before it is kept; its sidecar NAME.json
    is written beside it. Raises BuildError (one line, says what to change) on failure, and
    before any work when the engine or its sidecar exists, or ``out`` is rtpipe's own model
    folder, unless ``overwrite`` (see ``check_out``).
    """
    from pipeline.models import ModelError, checkpoint_of, resolve

    options = options or BuildOptions()
    say = progress or (lambda _msg: None)
    say(f"loading {spec}")
    try:
        graph = resolve(checkpoint_of(spec), weights, options.imgsz, trust_checkpoint=trust_checkpoint)
    except ModelError as exc:
        raise BuildError(str(exc)) from exc
    if graph.engine is not None:
        raise BuildError(f"'{spec}' is already a built engine: build from the checkpoint or ONNX it came from")
    command = build_command(spec, options, out, weights, trust_checkpoint, name)
    return build_graph(graph, options, Path(out), name, say, command, overwrite)


def engine_name(label: str, meta: EngineMeta, options: BuildOptions) -> str:
    """``STEM-HxW-bBATCH-PRECISION[-DEVICE]``: the options that make engines differ, readable."""
    path = Path(label)  # a file: its stem; torchvision:<arch> or a builtin: the name itself
    stem = path.stem if path.suffix or "/" in label else label.replace(":", "-")
    h, w = meta.fit.input_hw
    device = f"-{options.device.replace(':', '')}" if options.format == "aoti" else ""
    return f"{stem}-{h}x{w}-b{options.batch.label()}-{options.precision}{device}"


def build_graph(graph, options: BuildOptions, out: Path, name: str | None = None, say: Progress = lambda _m: None,
                command: str | None = None, overwrite: bool = False) -> Path:
    """Build a resolved Network (see pipeline.models.resolve) into ``out``; see ``build``."""
    from pipeline.build import check
    from pipeline.build.samples import sample_inputs

    started = time.perf_counter()
    meta = graph.meta
    options.check_against(meta, has_module=graph.module is not None)
    engine = out / ((name or engine_name(graph.label, meta, options)) + SUFFIX[options.format])
    check_out(engine, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    sizes = options.batch.check_sizes()
    say("rendering sample inputs")
    samples = [sample_inputs(meta, n, seed=i) for i, n in enumerate(sizes)]
    say("running the PyTorch reference" if graph.module is not None else "running the source ONNX (reference)")
    reference = check.reference_runner(graph)
    expected = [reference(x) for x in samples]
    calib = held = None
    if options.precision == "int8":
        from pipeline.build.samples import calibration_frames, split

        calib, held = split(calibration_frames(options.calib, options.calib_frames))

    meta = replace(meta, batch=options.batch.max if options.batch.fixed else None, batch_max=options.batch.max)  # fixed: exactly this many
    partial = engine.with_name(engine.stem + ".partial" + engine.suffix)
    try:
        runner = _make_engine(graph, meta, options, partial, say, calib)
        say("checking the engine against the reference")
        results = [runner(x) for x in samples]
        report = check.compare_outputs(expected, results, options.precision, graph.label, options.format, meta.layout or "dense")
        if options.precision == "int8":
            report["int8"] = check.int8_report(reference, runner, meta, options, held, say)
        sidecar_path(engine).unlink(missing_ok=True)  # an old sidecar must never describe the new engine
        os.replace(partial, engine)
    finally:
        partial.unlink(missing_ok=True)

    libs = versions()
    opts = options.key_dict()
    gpu_info = gpu(options.device) if options.format != "onnx" else None
    checkpoint = {"path": str(graph.source) if graph.source else None, "sha256": checkpoint_sha256(graph)}
    record = {
        "schema": SCHEMA,
        "engine": engine.name,
        "format": options.format,
        "engine_bytes": engine.stat().st_size,
        "engine_sha256": sha256(engine),
        "model": meta.to_dict(),
        "input": input_description(meta, options),
        "outputs": {k: list(v.shape[1:]) for k, v in results[0].items()},
        "precision": options.precision,
        "batch": options.batch.to_dict(),
        "device": options.device,
        "checkpoint": checkpoint,
        "options": opts,
        "versions": libs,
        "gpu": gpu_info,
        "cache_key": cache_key(checkpoint["sha256"], opts, libs, gpu_info),
        "check": report,
        "command": command or build_command(graph.label, options, out, None, False, name),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    write_sidecar(engine, record)
    if options.format != "onnx":  # native code: loadable later without --trust-engine, because rtpipe made it
        from pipeline.trust import record_built

        record_built(engine, record["engine_sha256"])
    say(f"wrote {engine}")
    return engine


def check_out(engine: Path, overwrite: bool) -> None:
    """Refuse, before any work, to replace an engine or its sidecar that exists (or a link at its
    name), or to write into rtpipe's own model folder (the shipped models: a build there replaces
    them, or adds files a reinstall deletes), unless ``overwrite``."""
    from pipeline.models import ASSETS

    if overwrite:
        return
    if engine.parent.resolve().is_relative_to(ASSETS.resolve()):
        raise BuildError(f"'{engine.parent}' is rtpipe's own model folder (the shipped models): build into another folder "
                         "(-o engines), or pass --overwrite to write there on purpose")
    for path in (engine, sidecar_path(engine)):
        if path.exists() or path.is_symlink():
            raise BuildError(f"'{path}' exists: pass --overwrite to replace it (the engine and its sidecar), or give another -o or --name")


def _make_engine(graph, meta: EngineMeta, options: BuildOptions, path: Path, say: Progress, calib: list | None = None):
    """Write the engine to ``path``; return a runner for it (batch -> named outputs). calib: int8 calibration frames."""
    if options.format == "aoti":
        from pipeline.backends.aoti import AotiBackend
        from pipeline.build.aoti import compile_package

        say("torch.export + AOTInductor compile (minutes on a CPU)")
        compile_package(graph.module, meta, options, path)
        return AotiBackend(path, meta, options.device).infer

    say(f"exporting ONNX ({options.precision} graph)" if graph.module is not None else "reading the source ONNX")
    onnx_bytes = export_onnx(graph, meta, options)
    if options.precision == "int8":
        from pipeline.build.quantize import quantize

        say(f"calibrating INT8 on frames from {options.calib}")
        onnx_bytes = quantize(onnx_bytes, meta, options, calib)
    if options.format == "onnx":
        from pipeline.backends.onnxruntime import OnnxRuntimeBackend

        path.write_bytes(onnx_bytes)
        return OnnxRuntimeBackend(onnx_bytes).infer
    from pipeline.backends import tensorrt as trt_backend

    say("building the TensorRT engine (minutes)")
    try:
        plan = trt_backend.build_engine(onnx_bytes, options, path.parent / "timing.cache", say)
    except ValueError as exc:  # TensorRT refused the graph or the settings
        raise BuildError(str(exc)) from exc
    path.write_bytes(plan)
    return trt_backend.TensorRTBackend(path, meta, options.device).infer


def export_onnx(graph, meta: EngineMeta, options: BuildOptions) -> bytes:
    """The family's graph module as ONNX bytes (fp32, or fp16 inside with fp32 at the edges);
    an ONNX spec is used as it is."""
    import onnx

    from pipeline.models.export import to_onnx

    if graph.module is None:
        data = graph.onnx.read_bytes() if isinstance(graph.onnx, Path) else graph.onnx
        if options.precision == "fp16" and options.format == "onnx":
            raise BuildError(f"'{graph.label}' is already an ONNX file: an fp16 ONNX is exported from the checkpoint")
        return data
    half = options.precision == "fp16"
    if half and options.format == "tensorrt":
        from pipeline.backends.tensorrt import wants_fp16_graph

        half = wants_fp16_graph()  # TensorRT 10.x: an fp32 graph and the FP16 builder flag
    module = half_precision(graph.module) if half else graph.module
    try:
        data = to_onnx(module, meta, opset=options.opset, batch=options.batch.max if options.batch.fixed else None)
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except Exception as exc:
        raise BuildError(f"{graph.label}: ONNX export failed ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})") from exc
    return data


def half_precision(module):
    """Run ``module`` in fp16 with fp32 inputs and outputs (integer outputs untouched)."""
    import copy

    import torch

    class HalfGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = copy.deepcopy(module).half()

        def forward(self, images):
            out = self.inner(images.half())
            out = out if isinstance(out, (tuple, list)) else (out,)
            return tuple(o.float() if o.is_floating_point() else o for o in out)

    return HalfGraph().eval()


def input_description(meta: EngineMeta, options: BuildOptions) -> dict:
    h, w = meta.fit.input_hw
    b = options.batch
    norm = f"(x - mean {list(meta.mean)}) / std {list(meta.std)}, inside the engine" if meta.mean is not None else "none (RGB 0..1 in)"
    return {"name": "images", "shape": [b.max if b.fixed else f"{b.min}..{b.max}", 3, h, w], "dtype": "float32",
            "color": "RGB", "scale": "1/255", "fit": meta.fit.to_dict(), "normalisation": norm}


def build_command(spec, options: BuildOptions, out, weights, trust, name) -> str:
    """The command that rebuilds the engine, as the sidecar records it (and refusals show it): a
    rebuild replaces the engine it describes, so it carries --overwrite."""
    parts = ["rtpipe", "build", shlex.quote(str(spec)), *options.cli_args(), "-o", shlex.quote(str(out))]
    if weights is not None:
        parts += ["--weights", shlex.quote(str(weights))]
    if trust:
        parts.append("--trust-checkpoint")
    if name:
        parts += ["--name", shlex.quote(name)]
    return " ".join([*parts, "--overwrite"])
