"""Batch jobs: many recordings, each its own run with the same settings (``rtpipe run DIR --out OUT``).

- ``inputs``: DIR, GLOB and @list.txt -> the recordings, each with the name its outputs take.
- ``manifest``: OUT/manifest.jsonl, one line per recording's outcome; what resume skips.
- ``job``: one recording's run (a Session over models loaded once) and the single-process job.
- ``ray_job``: the same job fanned out to Ray actors, one loaded model each (``--ray``).
"""

from pipeline.batch.inputs import VIDEO_SUFFIXES, Recording, find_recordings
from pipeline.batch.job import BatchJob, JobSummary

__all__ = ["VIDEO_SUFFIXES", "BatchJob", "JobSummary", "Recording", "find_recordings"]
