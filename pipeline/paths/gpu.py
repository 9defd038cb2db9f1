"""The model's steps on the device (see ``pipeline.paths``).

  preprocess   (per source thread)  upload the uint8 frame once (``Uploader``), fit it on the device
  infer        (one thread)         stack the batch, run the engine on tensors (CUDA graphs when fixed-shape)
  postprocess  (one thread)         the family's device decoder (YOLO dense: thresholds, batched_nms,
                                    masks on the device); without one the outputs come to the host
                                    and the family's host decoder runs
  overlay      (one thread)         masks and box outlines on the device, one copy down, labels on the CPU

On CUDA each source uploads and fits on its own stream; the model, decoding and drawing share
one stream that waits for each frame's upload event, so copies overlap the model's work.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.cuda.graphs import CudaGraphs
from pipeline.cuda.transfer import Uploader, on
from pipeline.models import Model
from pipeline.overlay import device as device_overlay
from pipeline.overlay.host import Overlay
from pipeline.paths import DeviceFrame, Item, ShapeGroups
from pipeline.preprocess.device import prepare


class GpuPath:
    """Preprocess, infer, postprocess and overlay with frames on the backend's tensor device.

    Works on any torch device: on CPU tensors the same code runs without streams (CI tests it
    so). ``graphs``: replay CUDA graphs for the engine call, unless the backend captures its
    own (TensorRT).
    """

    name = "gpu"

    def __init__(self, model: Model, graphs: bool = True):
        backend = model.backend
        if backend.tensor_device is None:
            raise ValueError(f"the {backend.name} backend does not run on tensors: the GPU path needs torch, aoti or tensorrt")
        self.model = model
        self.device = torch.device(backend.tensor_device)
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.fit = model.info.fit
        self._uploaders: dict[int, Uploader] = {}
        run = backend.infer_tensor
        if graphs and self.cuda and not backend.captures_own_graphs:
            run = CudaGraphs(run, self.device, f"{model.info.path} ({backend.name})")
        self._run = run
        self._decoder = model.decoder.on_device()  # None: this family decodes on the host only
        self._on_device = (device_overlay.MaskAnnotator(), device_overlay.BoxAnnotator())
        self._class_tint = device_overlay.ClassMapAnnotator()
        self._on_host = Overlay(model.info.names)  # labels and HUD; everything when masks were decoded on the host

    def _uploader(self, source_id: int) -> Uploader:
        up = self._uploaders.get(source_id)
        if up is None:  # one per source: each source's preprocess runs in its own thread
            up = self._uploaders[source_id] = Uploader(self.device)
        return up

    def preprocess(self, item: Item) -> None:
        up = self._uploader(item.frame.source_id)
        with on(up.stream):
            frame = up(item.frame.image)
            item.tensor, item.transform = prepare(frame, self.fit)
            ready = None
            if self.cuda:
                ready = torch.cuda.Event()
                ready.record(up.stream)
                frame.record_stream(self.stream)  # used on the model's stream later: keep it until then
                item.tensor.record_stream(self.stream)
        item.device = DeviceFrame(frame, ready)

    def _batch(self, items: list[Item]) -> torch.Tensor:
        """The items' inputs stacked on the model's stream, once each frame's upload is done."""
        for it in items:
            if it.device.ready is not None:
                self.stream.wait_event(it.device.ready)
        return torch.stack([it.tensor for it in items])

    def infer(self, items: list[Item]) -> dict | ShapeGroups:
        """One engine call for the batch; one per input shape when frames were fitted to several."""
        shapes = [tuple(it.tensor.shape) for it in items]
        with on(self.stream):
            if len(set(shapes)) == 1:
                return self._run(self._batch(items))
            groups = ShapeGroups()
            for shape in dict.fromkeys(shapes):
                idx = [i for i, s in enumerate(shapes) if s == shape]
                groups.append((idx, self._run(self._batch([items[i] for i in idx]))))
            return groups

    def engine_call(self, items: list[Item]):
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

    def postprocess(self, outputs: dict | ShapeGroups, items: list[Item]) -> None:
        if isinstance(outputs, ShapeGroups):
            for idx, out in outputs:
                self.postprocess(out, [items[i] for i in idx])
            return
        transforms = [it.transform for it in items]
        with on(self.stream):
            if self._decoder is None:
                host = {k: v.float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy() for k, v in outputs.items()}
                for it, d in zip(items, self.model.postprocess(host, transforms)):
                    it.detections = d
                return
            for it, (d, masks) in zip(items, self._decoder(outputs, transforms)):
                it.detections, it.device.masks = d, masks

    def overlay(self, item: Item, hud: dict | None) -> np.ndarray:
        dets, masks = item.detections, item.device.masks
        if dets.class_map is not None:  # semantic: the tint on the device (the map goes up again: 1 byte a pixel), legend on the host
            with on(self.stream):
                image = item.device.image.clone()
                self._class_tint.annotate(image, torch.from_numpy(dets.class_map.ids).to(self.device, non_blocking=True))
                out = image.cpu().numpy()
            self._on_host.classes.legend(out, dets.class_map)
            if hud is not None:
                self._on_host.hud.annotate(out, hud)
            return out
        if (masks is None and dets.mask is not None and len(dets)) or dets.labels is not None:
            # decoded on the host: drawn there
            return self._on_host.draw(item.frame.image, dets, hud)
        tint, boxes = self._on_device
        with on(self.stream):
            image = item.device.image.clone()
            tint.annotate(image, dets, masks)
            boxes.annotate(image, dets)
            out = image.cpu().numpy()
        self._on_host.labels.annotate(out, dets)
        if hud is not None:
            self._on_host.hud.annotate(out, hud)
        return out
