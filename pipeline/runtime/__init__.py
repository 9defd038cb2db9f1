"""Running a model on sources: the threaded pipeline, its queues, and the library session.

  queues.py    bounded, stop-aware queues between stage threads (drop-oldest for live sources)
  pipeline.py  ``Pipeline``: a thread per stage, batching across sources, faults, drain/abort
  session.py   ``Session``: settings -> model, sources, sinks, Pipeline -> metrics (what ``rtpipe run`` runs)
"""

from pipeline.runtime.pipeline import STAGES, Pipeline, SourceFailed, StageError

__all__ = ["STAGES", "Pipeline", "SourceFailed", "StageError"]
