"""TensorRT: engine builder and runtime backend -- the only module that imports ``tensorrt``.

Written against the documented TensorRT 10.x and 11.x Python APIs; it needs ``tensorrt`` and
a CUDA GPU, so it is tested only where both exist (tests/backends/test_tensorrt.py skips
otherwise, and the README says where it has run).

Build: parse the ONNX, one optimisation profile for the batch range, workspace limit, builder
optimisation level, persistent timing cache. Precision: on 10.x fp16/int8 set the builder
flags (int8 additionally needs the Q/DQ graph); on 11.x networks are strongly typed, so fp16
arrives as an fp16 graph and int8 as Q/DQ nodes, and no flag is set. The result is a plain
serialized plan (``trtexec --loadEngine`` reads it).

Run: name-based I/O tensors, ``execute_async_v3`` on a dedicated ``torch.cuda.Stream``, torch
CUDA tensors as buffers (no PyCUDA), ``set_input_shape`` for dynamic batch, and CUDA-graph
replay for each fixed batch size once it has run, falling back to plain enqueue when capture
fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.backends import run_in_chunks
from pipeline.types import EngineMeta


def _trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ValueError("TensorRT is not installed: pip install 'rtpipe[tensorrt]' (needs an NVIDIA GPU and driver)") from exc
    return trt


def major_version() -> int:
    return int(_trt().__version__.split(".")[0])


def wants_fp16_graph() -> bool:
    """11.x builds fp16 only from an fp16 graph (strong typing); 10.x from fp32 + the FP16 flag."""
    return major_version() >= 11


def build_engine(onnx_bytes: bytes, options, timing_cache: Path, say) -> bytes:
    """ONNX bytes -> a serialized TensorRT plan, built on ``options.device``. A ValueError (one
    line) when TensorRT refuses; the builder reports it as a BuildError."""
    import torch

    trt = _trt()
    if major_version() < 10:
        raise ValueError(f"TensorRT {trt.__version__} is too old: rtpipe targets 10.x and 11.x")
    torch.cuda.set_device(torch.device(options.device))
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0) if major_version() == 10 else builder.create_network()
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT could not parse the ONNX graph: {errors[:300]}")
    config = builder.create_builder_config()
    if options.workspace:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace * (1 << 30)))
    config.builder_optimization_level = options.opt_level
    if major_version() == 10 and options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        if options.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    inp = network.get_input(0)
    _, c, h, w = inp.shape
    b = options.batch
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (b.min, c, h, w), (b.opt, c, h, w), (b.max, c, h, w))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    config.progress_monitor = _progress_monitor(trt, say)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ValueError("TensorRT could not build the engine (see its log above); try --workspace with more GiB or --opt-level 2")
    timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(plan)


def _progress_monitor(trt, say):
    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.phases: dict[str, tuple[str | None, int]] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.phases[phase_name] = (parent_phase, num_steps)
            say(f"TensorRT: {phase_name}")

        def step_complete(self, phase_name, step):
            total = self.phases.get(phase_name, (None, 0))[1]
            say(f"TensorRT: {phase_name} {step + 1}/{total}")
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            self.phases.pop(phase_name, None)

    return Monitor()


class TensorRTBackend:
    """Runs a TensorRT plan: numpy batch in, numpy outputs out; device buffers stay torch tensors."""

    name = "tensorrt"
    captures_own_graphs = True

    def __init__(self, path: str | Path, meta: EngineMeta, device: str = "cuda"):
        import torch

        trt = _trt()
        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise ValueError(f"TensorRT engines run on a CUDA GPU; device '{device}' is not one: use --device cuda")
        self.torch, self.trt = torch, trt
        self.device = torch.device(device)
        self.tensor_device = str(self.device)
        self.stream = torch.cuda.Stream(self.device)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise ValueError(f"'{path}': TensorRT could not load the plan (built for another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        if len(self.inputs) != 1:
            raise ValueError(f"'{path}': expected one image input, found {self.inputs}")
        self.input_name = self.inputs[0]
        self.input_hw = meta.fit.input_hw
        self.output_names = list(meta.outputs)
        lo, _, hi = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.exact = self.min_batch == self.max_batch
        self.buffers: dict[int, tuple] = {}  # batch size -> (pinned host input, device input, device outputs)
        self.graphs: dict[int, object] = {}  # batch size -> CUDA graph over those buffers, or None when capture failed
        self.seen: set[int] = set()

    def _dtype(self, name: str):
        t, trt = self.torch, self.trt
        return {trt.float32: t.float32, trt.float16: t.float16, trt.int32: t.int32, trt.int64: t.int64, trt.bool: t.bool,
                trt.uint8: t.uint8}[self.engine.get_tensor_dtype(name)]

    def _bind(self, n: int):
        """Buffers for batch ``n`` (made once per size: pinned host input, device input, outputs), bound to the context."""
        torch = self.torch
        bufs = self.buffers.get(n)
        if bufs is None:
            x = torch.empty((n, 3, *self.input_hw), dtype=self._dtype(self.input_name), device=self.device)
            self.context.set_input_shape(self.input_name, tuple(x.shape))
            outs = {name: torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtype(name), device=self.device)
                    for name in self.outputs}
            host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
            bufs = self.buffers[n] = (host, x, outs)
        host, x, outs = bufs
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        for name, t in outs.items():
            self.context.set_tensor_address(name, t.data_ptr())
        return bufs

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def _capture(self, n: int):
        """A CUDA graph of one enqueue at batch ``n`` (on its bound buffers), or None when capture is not possible."""
        torch = self.torch
        self._bind(n)
        try:
            with torch.cuda.stream(self.stream):
                self._enqueue()  # TensorRT allocates lazily on the first run: not while capturing
                self.stream.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                    self._enqueue()
            return graph
        except Exception:
            return None

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        n = len(batch)
        if n not in self.graphs and n in self.seen:  # second time at this size: worth a graph
            self.graphs[n] = self._capture(n)
        self.seen.add(n)
        host, x, outs = self._bind(n)
        host.numpy()[:] = batch
        with torch.cuda.stream(self.stream):
            x.copy_(host, non_blocking=True)
            graph = self.graphs.get(n)
            if graph is not None:
                graph.replay()
            else:
                self._enqueue()
            result = {k: v.to("cpu", non_blocking=True) for k, v in outs.items()}
        self.stream.synchronize()
        return {k: result[k].float().numpy() if result[k].is_floating_point() else result[k].numpy() for k in self.output_names if k in result}

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return run_in_chunks(self._run, batch, self.max_batch, exact=self.exact)

    def _run_tensor(self, batch) -> dict:
        torch = self.torch
        n = len(batch)
        if n not in self.graphs and n in self.seen:
            self.graphs[n] = self._capture(n)
        self.seen.add(n)
        _, x, outs = self._bind(n)
        self.stream.wait_stream(torch.cuda.current_stream(self.device))  # the batch is ready
        with torch.cuda.stream(self.stream):
            x.copy_(batch)  # device to device (and to the engine's input dtype)
            graph = self.graphs.get(n)
            if graph is not None:
                graph.replay()
            else:
                self._enqueue()
            result = {k: outs[k].clone() for k in self.output_names if k in outs}
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        for t in result.values():
            t.record_stream(torch.cuda.current_stream(self.device))
        return result

    def infer_tensor(self, batch) -> dict:
        """(B, 3, H, W) float32 tensor on the GPU -> {name: tensor on the GPU}, no host copies."""
        return run_in_chunks(self._run_tensor, batch, self.max_batch, exact=self.exact)
