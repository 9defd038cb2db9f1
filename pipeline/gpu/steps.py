"""The pipeline's steps on the device (the twin of ``pipeline.runtime.CpuSteps``).

  prepare  (per source thread)  upload the uint8 frame once (``Uploader``), letterbox on the device
  infer    (one thread)         stack the batch, run the engine on tensors (CUDA graphs when fixed-shape)
  decode   (one thread)         YOLO: thresholds, batched_nms, masks on the device; other families:
                                 the outputs come to the host and the family's numpy decoder runs
  draw     (one thread)         masks and box outlines on the device, one copy down, labels on the CPU

On CUDA each source uploads and letterboxes on its own stream; the model, decoding and drawing
share one stream that waits for each frame's upload event, so copies overlap the model's work.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.gpu import overlay as gpu_overlay
from pipeline.gpu.decode import YoloTensorDecoder
from pipeline.gpu.graphs import CudaGraphs
from pipeline.gpu.preprocess import prepare
from pipeline.gpu.transfer import Uploader, on
from pipeline.models import Model
from pipeline.models.yolo import YoloDecoder
from pipeline.overlay import draw, draw_hud, draw_labels


class GpuSteps:
    """Prepare, infer, decode and draw with frames on ``model.backend.device``.

    Works on any torch device: on CPU tensors the same code runs without streams (CI tests
    it so). ``graphs``: replay CUDA graphs for the engine call (torch and AOTInductor; a
    TensorRT plan captures its own).
    """

    name = "gpu"

    def __init__(self, model: Model, graphs: bool = True):
        if not hasattr(model.backend, "infer_tensor"):
            raise ValueError(f"the {model.backend.name} backend does not run on tensors: the GPU path needs torch, aoti or tensorrt")
        self.model = model
        self.device = torch.device(getattr(model.backend, "device", "cpu"))
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.fit = model.metadata.fit
        self._uploaders: dict[int, Uploader] = {}
        run = model.backend.infer_tensor
        if graphs and self.cuda and model.backend.name != "tensorrt":
            run = CudaGraphs(run, self.device, f"{model.metadata.path} ({model.backend.name})")
        self._run = run
        d = model.decoder
        self._decoder = YoloTensorDecoder(d.nc, d.s, d.max_candidates) if isinstance(d, YoloDecoder) else None

    def _uploader(self, source_id: int) -> Uploader:
        up = self._uploaders.get(source_id)
        if up is None:  # one per source: each source's prepare runs in its own thread
            up = self._uploaders[source_id] = Uploader(self.device)
        return up

    def prepare(self, item) -> None:
        up = self._uploader(item.frame.source_id)
        with on(up.stream):
            frame = up(item.frame.image)
            item.tensor, item.meta = prepare(frame, self.fit)
            ready = None
            if self.cuda:
                ready = torch.cuda.Event()
                ready.record(up.stream)
                frame.record_stream(self.stream)  # used on the model's stream later: keep it until then
                item.tensor.record_stream(self.stream)
        item.extra = {"frame": frame, "ready": ready, "masks": None}

    def _batch(self, items) -> torch.Tensor:
        """The items' inputs stacked on the model's stream, once each frame's upload is done."""
        for it in items:
            if it.extra["ready"] is not None:
                self.stream.wait_event(it.extra["ready"])
        return torch.stack([it.tensor for it in items])

    def infer(self, items) -> dict:
        with on(self.stream):
            return self._run(self._batch(items))

    def engine_call(self, items):
        """The engine alone on these prepared items (already on the device; outputs stay there),
        as a call to repeat; it returns when the device is done (``rtpipe bench``)."""
        with on(self.stream):
            batch = self._batch(items)

        def call():
            with on(self.stream):
                out = self._run(batch)
            if self.cuda:
                self.stream.synchronize()
            return out

        return call

    def decode(self, outputs: dict, items) -> None:
        metas = [it.meta for it in items]
        with on(self.stream):
            if self._decoder is None:  # a family without a device decoder: decode on the host
                host = {k: v.float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy() for k, v in outputs.items()}
                for it, d in zip(items, self.model.decode(host, metas)):
                    it.detections = d
                return
            for it, (d, masks) in zip(items, self._decoder(outputs, metas)):
                it.detections, it.extra["masks"] = d, masks

    def draw(self, item, hud: dict | None) -> np.ndarray:
        dets, masks, names = item.detections, item.extra["masks"], self.model.metadata.names
        if masks is None and dets.mask is not None and len(dets):  # masks decoded on the host: drawn there
            return draw(item.frame.image, dets, names, hud=hud)
        with on(self.stream):
            image = item.extra["frame"].clone()
            gpu_overlay.blend_masks(image, dets, masks)
            gpu_overlay.draw_outlines(image, dets)
            out = image.cpu().numpy()
        draw_labels(out, dets, names, outlines=False)
        if hud is not None:
            draw_hud(out, hud)
        return out
