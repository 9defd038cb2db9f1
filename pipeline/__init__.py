"""rtpipe: real-time detection and instance segmentation on cameras, streams and recordings.

Python API::

    from pipeline import Pipeline, load_model, open_source
    from pipeline.sinks import VideoSink, JsonlSink

    model = load_model("tiny-seg")
    source = open_source("clip.mp4")
    metrics = Pipeline(source, model, [VideoSink("out.mp4", source.fps)]).run()
"""

from pipeline.models import load_model
from pipeline.runtime import Pipeline, StageError
from pipeline.sources import open_source
from pipeline.types import Detections, Frame, FitTransform

__all__ = ["Pipeline", "StageError", "load_model", "open_source", "Detections", "Frame", "FitTransform"]
__version__ = "0.1.0"
