"""The three measurements of ``rtpipe bench``; each reads the source afresh.

- ``engine_only``: the engine on one preprocessed batch, back to back: no decoding,
  preprocessing, postprocessing or writing. What "FPS = 1000 / inference ms" reports. On the
  GPU path the batch is already on the device and the outputs stay there.
- ``sequential``: every stage in one thread, one frame at a time, as a simple script does it.
- ``pipelined``: the ``Pipeline`` (a thread per stage, bounded queues, batching).

All three do the model's work on the same ``ModelPath`` (``CpuPath`` or ``GpuPath``, see
``pipeline.paths``). ``progress(done)`` is called with the frames (or engine calls) done so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from pipeline.bench.system import Usage
from pipeline.metrics import LatencyStats, RunMetrics
from pipeline.paths import Item, ModelPath
from pipeline.runtime import STAGES, Pipeline
from pipeline.sinks import Sink, open_sinks
from pipeline.sources import Source, SourceError

Progress = Callable[[int], None]


def make_sinks(kind: str, folder: Path, tag: str, source: Source, names) -> list[Sink]:
    """The outputs a timed run writes (``pipeline.sinks.open_sinks``, as ``rtpipe run`` makes them):
    none, ``TAG.jsonl``, or ``TAG.mp4`` (annotated H.264) + ``TAG.jsonl``."""
    return open_sinks([source], names, save=folder / f"{tag}.mp4" if kind == "video" else None,
                      jsonl=folder / f"{tag}.jsonl" if kind in ("jsonl", "video") else None)[0]


def sample_batch(source: Source, path: ModelPath, batch: int) -> list[Item]:
    """The first ``batch`` frames of the source, prepared (repeated if the source is shorter)."""
    frames = source.frames()
    try:
        items = [Item(f) for f, _ in zip(frames, range(batch))]
    finally:
        frames.close()
    if not items:
        raise SourceError(f"source '{source.uri}' gave no frames to benchmark")
    for it in items:
        path.preprocess(it)
    return [items[i % len(items)] for i in range(batch)]


def engine_only(path: ModelPath, items: list[Item], calls: int, warmup: int, progress: Progress | None = None) -> dict:
    """``calls`` timed engine calls on ``items`` after ``warmup`` untimed ones -> fps (frames/s) and per-call latency.

    ``fps`` is batch / median call time: what the engine does when nothing interrupts it (a
    shared machine's pauses would otherwise flatter the efficiency ratio); ``fps_wall`` is
    frames / wall time of the whole loop.
    """
    call = path.engine_call(items)
    for _ in range(warmup):
        call()
    stats = LatencyStats()
    started = time.perf_counter()
    for i in range(calls):
        t0 = time.perf_counter()
        call()
        stats.add((time.perf_counter() - t0) * 1000)
        if progress is not None:
            progress(i + 1)
    wall = time.perf_counter() - started
    latency = stats.summary()
    return {"fps": round(len(items) * 1000 / latency["p50_ms"], 3), "fps_wall": round(calls * len(items) / wall, 3), "calls": calls,
            "batch": len(items), "latency_ms": latency}


@contextmanager
def _timed(stats: LatencyStats):
    t0 = time.perf_counter()
    yield
    stats.add((time.perf_counter() - t0) * 1000)


def sequential(source: Source, path: ModelPath, sinks: list[Sink], frames: int, device: str,
               progress: Progress | None = None) -> tuple[dict, Usage]:
    """One thread, one frame at a time through every stage -> (a metrics dict shaped as ``Pipeline.run``'s, its usage)."""
    with Usage(device) as usage:
        metrics = _sequential(source, path, sinks, frames, progress)
    return metrics, usage


def _sequential(source: Source, path: ModelPath, sinks: list[Sink], frames: int, progress: Progress | None) -> dict:
    m = RunMetrics()
    stage = {name: m.stage(name) for name in STAGES}
    annotate = any(s.needs_image for s in sinks)
    stream = source.frames()
    complete, found = False, 0
    m.started = time.monotonic()
    try:
        while m.frames_in < frames:
            t0 = time.perf_counter()
            frame = next(stream, None)
            if frame is None:
                break
            stage["grab"].add((time.perf_counter() - t0) * 1000)
            m.frames_in += 1
            item = Item(frame)
            with _timed(stage["preprocess"]):
                path.preprocess(item)
            with _timed(stage["infer"]):
                outputs = path.infer([item])
            with _timed(stage["postprocess"]):
                path.postprocess(outputs, [item])
            detections = item.detections
            found += len(detections)
            image = None
            if annotate:
                with _timed(stage["overlay"]):
                    image = path.overlay(item, None)
            m.to_overlay.add((time.monotonic() - frame.captured_at) * 1000)
            with _timed(stage["sink"]):
                for s in sinks:
                    s.write(frame, detections, image)
            m.frame_out(frame.captured_at)
            if progress is not None:
                progress(m.frames_out)
        complete = True
    finally:
        stream.close()
        m.ended = time.monotonic()
        m.source_drops = source.drops
        for s in sinks:
            s.close(complete)
    return {**m.to_dict(), "detections_per_frame": round(found / max(m.frames_out, 1), 2)}


def pipelined(source: Source, path: ModelPath, sinks: list[Sink], frames: int, batch: int, device: str,
              progress: Progress | None = None) -> tuple[dict, Usage]:
    """The threaded pipeline on ``frames`` frames -> (its metrics dict, its usage)."""
    with Usage(device) as usage:
        metrics = Pipeline(source, path.model, sinks, batch=batch, max_frames=frames, on_frame=progress,
                           path=path).run(handle_sigint=False)
    return metrics, usage
