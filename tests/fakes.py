"""Every fake the tests use: stand-ins for sources, sinks, models and objects, in one place.

Sources
    FailingSource   wraps a file-like source; its decoder raises RuntimeError at the 6th frame
                    (a corrupt packet): the grab stage's and one source's failure.
    StallingSource  a live 30 FPS synthetic source that goes silent for ``stall`` seconds after
                    frame 3 (a reconnect): other sources must not wait for it.
    Frames          given pictures as a file-like source (frame i at pts i / 30).
    FlakySource     a live source whose first open works and every reopen fails (a reconnect wait).

Sinks
    RecordingSink   remembers the frame indices, how many pictures came, and how it was closed;
                    optionally slow (a slow consumer).
    FailingSink     a RecordingSink whose write raises OSError at frame 4 (a full disk).
    LatencySink     records (source id, end-to-end latency) of every frame it gets.
    Keep            needs pictures; keeps (index, detections, picture) of every frame.
    KeepItems       keeps (source id, index, detections, events) of every frame that leaves.

Models
    SlowModel       a model whose ``infer`` takes at least ``delay`` seconds (a slow engine).
    FailingModel    a model raising in one step (preprocess, infer or postprocess) from its nth call.
    tiny_graph      a family's graph module in miniature (a torch module): one seeded 1x1
                    convolution, its output returned in a tuple as graph modules return theirs.
    baked_scale     a deliberately wrong export wrapper (a torch module): the tracer turns a
                    tensor made into a Python number into a constant, so the exported graph
                    disagrees with its checkpoint.

The torch modules are made by functions, so that importing this file does not import torch.

Objects
    Pickled         stands in for the classes an Ultralytics checkpoint pickles.
    BrokenStream    a ``torch.cuda.Stream`` whose creation fails, as a CUDA graph capture can:
                    the graph wrapper must fall back to eager calls.

Files
    cut_images      a JPEG and a PNG cut short, as an interrupted copy leaves them: the JPEG still
                    decodes, the PNG does not, and libjpeg and libpng say so on stderr (fd 2).
"""

from __future__ import annotations

import time

import numpy as np

from pipeline.models import Model
from pipeline.sinks import Sink
from pipeline.sources import Reconnecting, Source, SourceError, open_source
from pipeline.types import Frame

# ---- sources --------------------------------------------------------------------------------


class FailingSource:
    """A file-like source whose decoder breaks after a few frames."""

    live, fps, total, drops, uri = False, None, None, 0, "broken"

    def __init__(self, inner):
        self.inner = inner

    def frames(self):
        for i, f in enumerate(self.inner.frames()):
            if i == 5:
                raise RuntimeError("corrupt packet (injected)")
            yield f

    def describe(self):
        return {"uri": self.uri}


class StallingSource:
    """A live 30 FPS source that goes silent for ``stall`` seconds after frame 3 (a reconnect)."""

    live, fps, total, drops, uri = True, 30, None, 0, "stalling"

    def __init__(self, stall: float):
        self.inner, self.stall = open_source("synthetic:64x48@30"), stall

    def frames(self):
        for f in self.inner.frames():
            if f.index == 3:
                time.sleep(self.stall)
            yield f

    def interrupt(self):
        pass

    def describe(self):
        return {"uri": self.uri}


class Frames(Source):
    """Given pictures as a file-like source."""

    def __init__(self, images):
        self.images, self.uri, self.total = images, "frames", len(images)

    def frames(self):
        for i, im in enumerate(self.images):
            yield Frame(im, i, i / 30, time.monotonic())


# ---- sinks ----------------------------------------------------------------------------------


class RecordingSink(Sink):
    """Remembers what it got; optionally slow (a slow consumer)."""

    def __init__(self, delay: float = 0.0, needs_image: bool = False):
        self.delay, self.needs_image = delay, needs_image
        self.indices: list[int] = []
        self.images = 0
        self.closed_complete: bool | None = None

    def write(self, frame, detections, image):
        if self.delay:
            time.sleep(self.delay)
        self.indices.append(frame.index)
        self.images += image is not None

    def close(self, complete):
        self.closed_complete = complete


class FailingSink(RecordingSink):
    """A RecordingSink whose disk fills up at frame 4."""

    def write(self, frame, detections, image):
        if frame.index == 4:
            raise OSError("disk full (injected)")
        super().write(frame, detections, image)


class LatencySink(RecordingSink):
    """Records (source id, seconds since capture) of every frame."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[int, float]] = []

    def write(self, frame, detections, image):
        self.seen.append((frame.source_id, time.monotonic() - frame.captured_at))


class Keep(Sink):
    """Keeps (index, detections, picture) of every frame; asks for the pictures."""

    needs_image = True

    def __init__(self):
        self.got = []

    def write(self, frame, detections, image):
        self.got.append((frame.index, detections, image))


class KeepItems(Sink):
    """Keeps (source id, index, detections, events) of every frame, as the pipeline hands it over."""

    def __init__(self):
        self.got = []

    def accept(self, item):
        self.got.append((item.frame.source_id, item.frame.index, item.detections, list(item.events)))

    def ids(self, source_id: int = 0) -> list[list[int]]:
        """Per frame of that source, in order: its tracker ids in detection order."""
        return [d.tracker_id.tolist() for sid, _, d, _ in sorted(self.got, key=lambda g: g[1]) if sid == source_id]


# ---- models ---------------------------------------------------------------------------------


class SlowModel(Model):
    """The tiny model with ``infer`` taking at least ``delay`` seconds (a slow engine)."""

    def __init__(self, base: Model, delay: float):
        super().__init__(base.backend, base.decoder, base.info)
        self.delay = delay

    def infer(self, batch):
        t0 = time.perf_counter()
        out = super().infer(batch)
        time.sleep(max(0.0, self.delay - (time.perf_counter() - t0)))
        return out


class FailingModel(Model):
    """The tiny model, raising in one step (preprocess, infer or postprocess) on the nth call."""

    def __init__(self, base: Model, step: str, at_call: int = 3):
        super().__init__(base.backend, base.decoder, base.info)
        self.step, self.at_call, self.calls = step, at_call, 0

    def _maybe_fail(self, step):
        if step == self.step:
            self.calls += 1
            if self.calls >= self.at_call:
                raise RuntimeError(f"injected failure in {step}")

    def preprocess(self, image):
        self._maybe_fail("preprocess")
        return super().preprocess(image)

    def infer(self, batch):
        self._maybe_fail("infer")
        return super().infer(batch)

    def postprocess(self, outputs, transforms):
        self._maybe_fail("postprocess")
        return super().postprocess(outputs, transforms)


def tiny_graph(out_channels: int = 5, seed: int = 0):
    """A graph module in miniature: (B, 3, H, W) -> (output0,), a seeded 1x1 convolution to ``out_channels``."""
    import torch

    class TinyGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, out_channels, 1)
            gen = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen))
                self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=gen))

        def forward(self, images):
            return (self.conv(images),)

    return TinyGraph().eval()


def baked_scale(inner):
    """``inner`` (a graph module returning two outputs) behind a deliberately wrong export
    wrapper: a tensor turned into a Python number is a constant to the tracer."""
    import torch

    class BakedScale(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):
            out0, out1 = self.inner(images)
            return out0 * float(images.mean()), out1

    return BakedScale(inner)


# ---- objects --------------------------------------------------------------------------------


class Pickled:
    """Stands in for the classes an Ultralytics checkpoint pickles."""


class BrokenStream:
    """A ``torch.cuda.Stream`` that cannot be made: what a failed CUDA graph capture looks like."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")


class FlakySource(Reconnecting):
    """A live source whose first open works and every reopen fails ("down"): for waits on a reconnect."""

    uri, live, source_id, reconnect = "flaky", True, 0, 60.0

    def __init__(self):
        super().__init__()
        self.opened = 0
        self._handle = self._open()

    def _open(self):
        self.opened += 1
        if self.opened > 1:
            raise SourceError("down")
        return object()

    def _read(self, handle):
        yield np.zeros((4, 4, 3), np.uint8), None

    def _close(self, handle):
        pass


# ---- files ----------------------------------------------------------------------------------


def cut_images(folder) -> tuple:
    """(a.jpg, b.png) in ``folder``, each cut short: libjpeg warns "Premature end of JPEG file" and
    decodes what it has; libpng reports "libpng error: Read Error" and nothing decodes."""
    import cv2

    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    jpg, png = folder / "a.jpg", folder / "b.png"
    data = cv2.imencode(".jpg", image)[1].tobytes()
    jpg.write_bytes(data[: len(data) // 2])
    png.write_bytes(cv2.imencode(".png", image)[1].tobytes()[:-12])  # its last chunks gone
    return jpg, png
