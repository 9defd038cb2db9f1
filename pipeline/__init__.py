"""rtpipe: real-time detection and instance segmentation on cameras, streams and recordings.

Python API: the session ``rtpipe run`` runs (settings as in a preset, or ``RunConfig``)::

    from pipeline import Session

    session = Session.from_settings(source="clip.mp4", model="demo", save="out.mp4")
    for result in session.stream():
        print(result.frame.index, len(result.detections))

or the parts: ``load_model``, ``open_source``, ``Pipeline`` and the sinks in ``pipeline.sinks``.
"""

from pipeline.loader import load_model
from pipeline.runtime import Pipeline, StageError
from pipeline.runtime.session import Result, Session
from pipeline.sources import open_source
from pipeline.types import Detections, FitTransform, Frame

__all__ = ["Pipeline", "Result", "Session", "StageError", "load_model", "open_source", "Detections", "Frame", "FitTransform"]
__version__ = "0.1.0"
