"""Ultralytics' trackers behind rtpipe's Tracker protocol, for comparisons on the same detections.

``model.track`` (Ultralytics) runs its detector at conf 0.1 and hands every frame's boxes to
``BYTETracker`` or ``BOTSORT`` configured by its stock ``bytetrack.yaml`` / ``botsort.yaml``; what it
returns are the activated tracks' boxes (the Kalman state after the update), ids, scores and
classes. ``UltralyticsTracker`` does exactly that with detections rtpipe recorded, so both tools
track the same boxes: ``register()`` adds ``ultralytics-bytetrack`` and ``ultralytics-botsort`` to
``pipeline.tracking.TRACKERS`` for the replay in benchmarks/tracking_accuracy.py.

Needs ultralytics (AGPL-3.0; a benchmark-only dependency, installed apart: it pulls the GUI
OpenCV over the headless one, so use a separate venv or reinstall opencv-python-headless after).
"""

from __future__ import annotations

import numpy as np

from pipeline.types import Detections

MODEL_TRACK_CONF = 0.1  # what model.track sets conf to when the caller gives none


class _Boxes:
    """The slice of Ultralytics' ``Boxes`` its trackers read: conf, cls, xywh, boolean indexing."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray):
        self.xyxy, self.conf, self.cls = xyxy, conf, cls
        self.xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, keep) -> _Boxes:
        return _Boxes(self.xyxy[keep], self.conf[keep], self.cls[keep])


class UltralyticsTracker:
    """One source's Ultralytics tracker with its stock configuration (``kind``: bytetrack, botsort)."""

    kind = ""
    settings: dict = {}

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        if settings:
            raise ValueError(f"ultralytics-{cls.kind} runs its stock {cls.kind}.yaml: no settings")

    def __init__(self, fps: float | None = None):
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml

        cfg = IterableSimpleNamespace(**YAML.load(check_yaml(f"{self.kind}.yaml")))
        self.name, self.settings = f"ultralytics-{self.kind}", dict(cfg)
        self.memory_s = cfg.track_buffer / 30.0
        self._tracker = TRACKER_MAP[self.kind](args=cfg)  # frame-counted, as model.track makes it

    def update(self, detections: Detections, pts: float, image: np.ndarray | None = None) -> Detections:
        keep = detections.confidence >= MODEL_TRACK_CONF
        boxes = _Boxes(detections.xyxy[keep].astype(np.float32), detections.confidence[keep].astype(np.float32),
                       detections.class_id[keep].astype(np.float32))
        out = self._tracker.update(boxes, image)
        if not len(out):
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), tracker_id=np.zeros(0, np.int64))
        return Detections(out[:, :4].astype(np.float32), out[:, 5].astype(np.float32), out[:, 6].astype(np.int32),
                          tracker_id=out[:, 4].astype(np.int64))


class UltralyticsByteTrack(UltralyticsTracker):
    kind = "bytetrack"


class UltralyticsBoTSort(UltralyticsTracker):
    kind = "botsort"


def register() -> None:
    """Adds ``ultralytics-bytetrack`` and ``ultralytics-botsort`` to rtpipe's tracker registry."""
    from pipeline.tracking import TRACKERS

    TRACKERS["ultralytics-bytetrack"] = UltralyticsByteTrack
    TRACKERS["ultralytics-botsort"] = UltralyticsBoTSort
