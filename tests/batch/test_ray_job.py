"""The batch job on a local Ray instance with 2 workers: a corrupt file and a worker killed
mid-job leave every good recording complete, the manifest says what failed and why, a rerun
does only what is missing, and the outputs equal the single-process job's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pipeline.batch import BatchJob
from pipeline.batch.job import LocalRunner
from pipeline.batch.manifest import staged_path
from pipeline.config import ConfigError, build_config
from pipeline.sinks import partial_path
from tests.conftest import make_clip

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'rtpipe[ray]')")
from pipeline.batch.ray_job import RayRunner  # noqa: E402

GOOD = ("a", "b", "c", "d", "e")


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (the runner leaves an instance it did not start running),
    its session files in a short temporary folder (Unix socket paths are limited), deleted after."""
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False, object_store_memory=200 * 2**20,
             _temp_dir=temp)
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    rec = tmp_path_factory.mktemp("rec")
    for i, name in enumerate(GOOD):
        make_clip(rec / f"{name}.mp4", frames=150, size=[(320, 240), (320, 180), (180, 320)][i % 3])
    (rec / "corrupt.mp4").write_bytes(os.urandom(5000))
    return rec


def job_over(rec: Path, out: Path) -> BatchJob:
    return BatchJob.create([str(rec)], out, build_config(None, {"model": "demo"}))


def run_killing_a_worker(rec: Path, out: Path, retries: int):
    """The job over ``rec`` on 2 workers; when one is partway through a recording, its process is
    SIGKILLed (as the OOM killer would). Returns the summary and (the recording, its worker)."""
    runner, killed = RayRunner(workers=2, retries=retries), {}
    killer = threading.Thread(target=kill_a_worker_mid_recording, args=(runner, out, killed))
    killer.start()
    summary = job_over(rec, out).run(runner, handle_signals=False)
    killer.join()
    assert len(killed) == 1, "no worker was caught mid-recording"
    return summary, next(iter(killed.items()))


def kill_a_worker_mid_recording(runner: RayRunner, out: Path, killed: dict) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for name, worker in runner.running().items():
            partial = partial_path(staged_path(out / f"{name}.jsonl"))  # (what a run being written is called)
            if worker != "?" and partial.exists() and partial.stat().st_size > 0:
                killed[name] = worker
                os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)
                return
        time.sleep(0.01)


def test_corrupt_file_and_killed_worker(local_ray, recordings, tmp_path):
    out = tmp_path / "ray"
    summary, (victim, worker) = run_killing_a_worker(recordings, out, retries=2)

    # exactly one retry: the restarted worker gets recordings only once it answers, so none is charged
    # for a call that reached it while Ray restarted it (that happened 1 run in 3 under load before)
    assert (summary.done, summary.failed, summary.left, summary.retried) == (5, 1, 0, 1)
    entries = lines(out / "manifest.jsonl")
    last = {e["name"]: e for e in entries}
    assert all(last[n]["status"] == "done" and last[n]["frames"] == 150 for n in GOOD)
    assert last["corrupt"]["status"] == "failed" and "cannot open" in last["corrupt"]["error"]
    retried = [e for e in entries if e["status"] == "retried"]
    assert {e["name"] for e in retried} == {victim} and "its worker died (attempt 1 of 3)" in retried[0]["error"]
    assert last[victim]["attempt"] == 1 + len(retried) and last[victim]["worker"] != worker  # done again by a (re)started worker
    assert len({e["worker"] for e in entries if e["worker"]}) >= 2

    # the same job in one process gives the same detections, byte for byte
    single = tmp_path / "single"
    assert job_over(recordings, single).run(LocalRunner(), handle_signals=False).done == 5
    for name in GOOD:
        assert (out / f"{name}.jsonl").read_bytes() == (single / f"{name}.jsonl").read_bytes(), name

    # a rerun does only what is missing: the failed file and a lost output
    (out / "c.jsonl").unlink()
    before = len(entries)
    again = job_over(recordings, out).run(RayRunner(workers=2), handle_signals=False)
    assert (again.skipped, again.done, again.failed) == (4, 1, 1)
    assert sorted(e["name"] for e in lines(out / "manifest.jsonl")[before:]) == ["c", "corrupt"]
    assert (out / "c.jsonl").read_bytes() == (single / "c.jsonl").read_bytes()


def test_a_recording_whose_worker_keeps_dying_fails_after_its_retries(local_ray, recordings, tmp_path):
    out = tmp_path / "ray"
    summary, (victim, _) = run_killing_a_worker(recordings, out, retries=0)
    last = {e["name"]: e for e in lines(out / "manifest.jsonl")}
    assert last[victim]["status"] == "failed" and "its worker died (attempt 1 of 1)" in last[victim]["error"]
    assert (summary.done, summary.failed) == (4, 2)  # the others went on (the dead worker restarted)


def test_a_worker_that_cannot_load_the_model_stops_the_job_with_one_line(local_ray, recordings, tmp_path):
    job = BatchJob.create([str(recordings)], tmp_path / "out", build_config(None, {"model": str(tmp_path / "nothere.onnx")}))
    with pytest.raises(ConfigError, match=r"model '.*nothere.onnx' not found.*\(worker .*:\d+\)") as err:
        job.run(RayRunner(workers=2), handle_signals=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()  # refused: the folder is left as it was (absent)


def test_refused_settings():
    with pytest.raises(ConfigError, match="--workers 0"):
        RayRunner(workers=0)
    with pytest.raises(ConfigError, match="--retries -1"):
        RayRunner(retries=-1)


def test_a_worker_that_cannot_see_the_output_folder_says_so(recordings, tmp_path):
    from pipeline.batch.ray_job import Worker

    job = job_over(recordings, tmp_path / "not-mounted-here")  # (the driver creates it; a node without the mount does not see it)
    where, _, error = Worker(job).ready()
    assert error is not None and "cannot see the output folder" in error and where in error


def test_stop_aborts_the_running_recordings_and_a_rerun_finishes(local_ray, recordings, tmp_path):
    out = tmp_path / "ray"
    runner = RayRunner(workers=2)

    def stop_when_running(done, entry):
        if any(partial_path(staged_path(out / f"{name}.jsonl")).exists() for name in runner.running()):
            runner.stop()

    summary = job_over(recordings, out).run(runner, progress=stop_when_running, handle_signals=False)
    assert summary.interrupted >= 1 and summary.left >= 1
    assert summary.done + summary.failed + summary.interrupted + summary.left == 6  # each recording counted once
    stopped = [e["name"] for e in lines(out / "manifest.jsonl") if e["status"] == "interrupted"]
    assert all((out / f"{name}.jsonl.partial").exists() and not (out / f"{name}.jsonl").exists() for name in stopped)
    again = job_over(recordings, out).run(RayRunner(workers=2), handle_signals=False)
    assert again.done + again.skipped == 5 and again.left == 0
    assert not list(out.glob("[a-e].jsonl.partial"))
