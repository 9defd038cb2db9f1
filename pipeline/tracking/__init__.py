"""Tracking: the stage after postprocess that gives each detection the id of the object it follows.

A ``Tracker`` follows one source's objects: ``update(detections, pts)`` returns the same
detections, in the same order (masks stay with their boxes), with ``tracker_id`` set (from 1;
-1 for a detection no confirmed track holds yet). Trackers are chosen by name (``--track``);
``TRACKERS`` maps each name to its class. The runtime keeps one tracker per source, so frames
of several sources batched into one model call never share tracks, and a tracker sees its
source's frames in order whatever the batch size. ``botsort`` and ``bytetrack`` come from
Roboflow's ``trackers`` (``pipeline.tracking.roboflow``); another library's tracker is a class
with ``check_settings``, ``update`` and ``memory_s``, added to ``TRACKERS`` (the class, or a
function returning it).

Time, drops and gaps: trackers are told each frame's pts (seconds). A live source that drops
frames moves its objects further between the frames the tracker sees, and the motion model
predicts over the real time passed; a track is forgotten when it has not been seen for its
memory (``lost_track_buffer`` thirtieths of a second, ByteTrack's convention), so after a
reconnect gap longer than that every object gets a new id. Ids are never reused within a
run. The track stage keeps the clock from going backwards (``pipeline.runtime.track``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from pipeline.config import ConfigError
from pipeline.types import Detections


class Tracker(Protocol):
    """Follows the objects of one source across its frames."""

    name: str
    memory_s: float  # how long an unseen object keeps its id

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        """A ConfigError naming a setting this tracker does not take or a bad value."""

    def update(self, detections: Detections, pts: float, image: np.ndarray | None = None) -> Detections:
        """The detections of the next frame (time ``pts`` s, never less than the previous
        call's; its picture, for trackers that look at it), same order, with ``tracker_id`` set."""


TRACKERS_VERSION = "2.6.1"  # Roboflow's trackers, installed apart (README): the version these wrappers are made for


def require_trackers() -> None:
    """A ConfigError with the install line when Roboflow's trackers is missing or another version."""
    try:
        import trackers
    except ImportError:
        raise ConfigError(f"tracking needs Roboflow's trackers: pip install --no-deps trackers=={TRACKERS_VERSION} "
                          "(see README)") from None
    version = getattr(trackers, "__version__", None) or _installed_version()
    if version != TRACKERS_VERSION:
        raise ConfigError(f"tracking needs Roboflow's trackers {TRACKERS_VERSION}, this is {version}: "
                          f"pip install --no-deps trackers=={TRACKERS_VERSION}")


def _installed_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trackers")
    except PackageNotFoundError:
        return None


def _roboflow(name: str):
    def load():
        from pipeline.tracking import roboflow

        return {"bytetrack": roboflow.ByteTrack, "botsort": roboflow.BoTSort}[name]

    return load


# name -> the tracker's class, or a function returning it (so that its module is imported on use)
TRACKERS = {"bytetrack": _roboflow("bytetrack"), "botsort": _roboflow("botsort")}


def tracker_class(name: str) -> type:
    if name not in TRACKERS:
        raise ConfigError(f"tracker '{name}': choose one of {', '.join(TRACKERS)}, or none")
    entry = TRACKERS[name]
    return entry if isinstance(entry, type) else entry()


def make_tracker(name: str, settings: dict | None = None, fps: float | None = None, reid: str | None = None,
                 smooth_boxes: bool = False) -> Tracker:
    """A new tracker ``name`` with ``settings`` (its own keys; a ConfigError names an unknown one)
    for a source of ``fps`` frames per second (None: unknown, 30 assumed); with ``reid`` (an
    embedder's spec) wrapped in appearance re-identification (``pipeline.tracking.reid``); with
    ``smooth_boxes`` its tracked detections' boxes are its tracks' states (a tracker that takes
    ``smooth_boxes``)."""
    cls = tracker_class(name)
    settings = dict(settings or {})
    cls.check_settings(settings)
    tracker = cls(fps=fps, **settings, **({"smooth_boxes": True} if smooth_boxes else {}))
    if reid is None:
        return tracker
    from pipeline.tracking.reid import AppearanceTracker, make_embedder

    return AppearanceTracker(tracker, make_embedder(reid))
