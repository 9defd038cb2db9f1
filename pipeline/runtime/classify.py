"""The classify stage (``--classify-crops``): a classifier on each detection's crop, the common
second stage after a detector (vehicle type, colour).

Runs in the postprocess thread, after the detector's decoding and before tracking; times itself
as the ``classify`` stage. Every detection of every frame in a batch is cropped from its frame
(the box rounded outwards, at least one pixel), fitted as the classifier's preset does, and
classified in batches of up to ``batch`` crops; each detection gets its best class and
probability as ``Detections.crop_labels``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pipeline.models import Model
from pipeline.paths import Item
from pipeline.types import Labels


class CropClassifier:
    """``model`` (a classification model) over the detections of a batch of items."""

    def __init__(self, model: Model, batch: int = 64):
        if model.info.task != "classify":
            raise ValueError(f"--classify-crops needs a classification model; '{model.info.path}' is a {model.info.task} model")
        self.model, self.batch = model, batch

    @staticmethod
    def regions(xyxy: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        """(N, 4) boxes -> (N, 4) int pixel regions x1, y1, x2, y2: rounded outwards, inside the
        frame, at least one pixel wide and high."""
        h, w = frame_hw
        r = np.empty((len(xyxy), 4), np.int64)
        r[:, 0] = np.clip(np.floor(xyxy[:, 0]), 0, w - 1)
        r[:, 1] = np.clip(np.floor(xyxy[:, 1]), 0, h - 1)
        r[:, 2] = np.clip(np.ceil(xyxy[:, 2]), r[:, 0] + 1, w)
        r[:, 3] = np.clip(np.ceil(xyxy[:, 3]), r[:, 1] + 1, h)
        return r

    def apply(self, items: list[Item]) -> None:
        """Fill ``item.detections.crop_labels`` for every item (an empty Labels where nothing was detected)."""
        tensors, owners = [], []
        for k, it in enumerate(items):
            image = it.frame.image
            for x1, y1, x2, y2 in self.regions(it.detections.xyxy, image.shape[:2]):
                tensors.append(self.model.preprocess(image[y1:y2, x1:x2])[0])
                owners.append(k)
        names = self.model.info.names
        ids, scores = np.zeros(len(tensors), np.int32), np.zeros(len(tensors), np.float32)
        decode = self.model.decoder
        for start in range(0, len(tensors), self.batch):
            chunk = np.stack(tensors[start : start + self.batch])
            for j, lab in enumerate(decode.top(self.model.infer(chunk)["probs"], 1)):
                ids[start + j], scores[start + j] = lab.class_id[0], lab.confidence[0]
        owners_arr = np.asarray(owners, np.int64)
        for k, it in enumerate(items):
            mine = owners_arr == k
            it.detections = replace(it.detections, crop_labels=Labels(ids[mine], scores[mine], names))
