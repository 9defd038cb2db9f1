"""The batch job in one process: outputs named after each recording, the manifest, resume,
a bad recording failing alone, stopping, and the same results as a plain run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.batch import BatchJob
from pipeline.batch.job import JobSummary, LocalRunner, new_entry, process
from pipeline.batch.manifest import Manifest
from pipeline.config import build_config
from pipeline.runtime.session import load_models
from tests.conftest import make_clip, probe


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def folder(root: Path, frames: int = 12) -> Path:
    """Two good clips (one in a sub-folder, one 4:3 and one portrait), a corrupt file, a truncated
    MP4 and a text file that is not an input."""
    rec = root / "rec"
    (rec / "day2").mkdir(parents=True)
    make_clip(rec / "a.mp4", frames=frames, size=(320, 240))
    make_clip(rec / "day2" / "b.mp4", frames=frames, size=(180, 320))
    (rec / "corrupt.mp4").write_bytes(os.urandom(4000))
    whole = make_clip(root / "whole.mp4", frames=frames).read_bytes()
    (rec / "cut.mp4").write_bytes(whole[: len(whole) // 2])  # its index (at the end) is gone
    (rec / "notes.txt").write_text("not a recording")
    return rec


@pytest.fixture(scope="module")
def first_job(tmp_path_factory):
    """One job over the folder, through the command line; later tests read what it left."""
    root = tmp_path_factory.mktemp("job")
    rec = folder(root)
    out = root / "out"
    code = cli.main(["run", str(rec), "--out", str(out), "--quiet"])
    return root, rec, out, code


def test_outputs_are_named_after_each_recording_and_a_bad_file_fails_alone(first_job):
    root, rec, out, code = first_job
    assert code == cli.EXIT_FAILED  # some failed
    for name in ("a", "day2/b"):
        assert (out / f"{name}.jsonl").exists() and (out / f"{name}.metrics.json").exists()
    assert len(lines(out / "a.jsonl")) == 12
    assert not list(out.glob("corrupt*")) and not list(out.glob("cut.jsonl"))  # failed: nothing presented as complete
    last = {e["name"]: e for e in lines(out / "manifest.jsonl")}
    assert set(last) == {"a", "day2/b", "corrupt", "cut"}
    assert last["a"]["status"] == "done" and last["a"]["frames"] == 12 and last["a"]["fps"] > 0 and last["a"]["wall_s"] > 0
    assert last["a"]["outputs"] == {"detections": "a.jsonl", "metrics": "a.metrics.json"}
    for bad in ("corrupt", "cut"):
        assert last[bad]["status"] == "failed" and last[bad]["input"] == str(rec / f"{bad}.mp4")
        assert "cannot open" in last[bad]["error"] and "\n" not in last[bad]["error"]


def test_outputs_equal_a_plain_run_of_that_recording(first_job, tmp_path):
    root, rec, out, _ = first_job
    for name in ("a", "day2/b"):
        own = tmp_path / f"{name.replace('/', '-')}.jsonl"
        assert cli.main(["run", str(rec / f"{name}.mp4"), "--json", str(own), "--quiet"]) == 0
        assert (out / f"{name}.jsonl").read_bytes() == own.read_bytes()


def test_rerun_does_only_what_is_missing(first_job, capsys):
    root, rec, out, _ = first_job
    before = len(lines(out / "manifest.jsonl"))
    assert cli.main(["run", str(rec), "--out", str(out)]) == cli.EXIT_FAILED
    redone = [e["name"] for e in lines(out / "manifest.jsonl")[before:]]
    assert sorted(redone) == ["corrupt", "cut"]  # failures are tried again, done ones skipped
    err = capsys.readouterr().err
    assert "2 of 4 recordings already done" in err
    failed = next(line for line in err.splitlines() if "failed: " in line and "corrupt.mp4" in line)
    assert failed.count("corrupt.mp4") == 1 and "Errno" not in failed  # one path, no errno noise

    (out / "a.jsonl").unlink()  # an output lost
    make_clip(rec / "day2" / "b.mp4", frames=8, size=(180, 320))  # a recording replaced
    make_clip(rec / "new.mp4", frames=5)  # and one added
    (rec / "corrupt.mp4").unlink()
    (rec / "cut.mp4").unlink()
    before = len(lines(out / "manifest.jsonl"))
    assert cli.main(["run", str(rec), "--out", str(out), "--quiet"]) == 0
    redone = {e["name"]: e for e in lines(out / "manifest.jsonl")[before:]}
    assert sorted(redone) == ["a", "day2/b", "new"]
    assert redone["day2/b"]["frames"] == 8 and len(lines(out / "day2" / "b.jsonl")) == 8


def test_other_settings_are_refused_in_the_same_folder(first_job, capsys):
    root, rec, out, _ = first_job
    assert cli.main(["run", str(rec), "--out", str(out), "--conf", "0.6", "--quiet"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "conf: 0.25 then, 0.6 now" in err and err.count("\n") == 1


def test_video_events_and_a_list(tmp_path):
    make_clip(tmp_path / "x.mp4", frames=10, size=(320, 240))
    make_clip(tmp_path / "y.mp4", frames=6, size=(320, 240))
    (tmp_path / "list.txt").write_text("x.mp4\ny.mp4\n")
    out = tmp_path / "out"
    code = cli.main(["run", f"@{tmp_path / 'list.txt'}", "--out", str(out), "--video", "--line", "0,0.5,1,0.5", "--quiet"])
    assert code == 0
    assert probe(out / "x.annotated.mp4")["frames"] == 10 and probe(out / "y.annotated.mp4")["frames"] == 6
    assert (out / "x.events.jsonl").exists() and (out / "y.events.jsonl").exists()
    entry = lines(out / "manifest.jsonl")[0]
    assert set(entry["outputs"]) == {"detections", "metrics", "events", "video"}
    assert all(r.get("tracker_id", 0) != 0 for f in lines(out / "x.jsonl") for r in f["detections"])  # tracked


@pytest.mark.parametrize("argv, expected", [
    (["--out", "OUT", "--save", "x.mp4"], "--save names one run's output"),
    (["--out", "OUT", "--json", "x.jsonl"], "--json names one run's output"),
    (["--out", "OUT", "--heatmap", "h.png"], "--heatmap names one run's output"),
    (["--out", "OUT", "--workers", "2"], "--workers and --retries are for --ray"),
    (["--ray"], "--ray is for batch jobs: add --out"),
    (["--video"], "--video is for batch jobs"),
    (["--out", "FILE"], "is a file: give a folder"),
    (["--out", "OUT", "--ray", "nonsense"], "is not a Ray address"),
    (["--out", "OUT", "--ray", "ray://head:10001"], "Ray Client is not supported"),
])
def test_refused(tmp_path, capsys, argv, expected):
    make_clip(tmp_path / "a.mp4", frames=3)
    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / a) if a in ("OUT", "FILE") else a for a in argv]
    assert cli.main(["run", str(tmp_path / "a.mp4"), *argv]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert not (tmp_path / "OUT").exists()


def test_stop_keeps_the_running_recording_partial_and_a_rerun_finishes(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    for name in ("a", "b"):
        make_clip(rec / f"{name}.mp4", frames=400)
    job = BatchJob.create([str(rec)], tmp_path / "out", build_config(None, {"model": "demo"}), video=True)
    runner = LocalRunner()

    def stop_in_first(done, entry):
        if 0.1 < done < 0.9:
            runner.stop()

    summary = job.run(runner, progress=stop_in_first, handle_signals=False)
    assert (summary.done, summary.interrupted, summary.left) == (0, 1, 1)  # each recording counted once
    out = tmp_path / "out"
    partial = {"a.jsonl.partial", "a.annotated.mp4.partial", "a.metrics.json.partial"}
    assert {p.name for p in out.glob("a*")} == partial  # nothing under a final name
    assert lines(out / "manifest.jsonl")[-1]["status"] == "interrupted"
    assert sorted(lines(out / "manifest.jsonl")[-1]["partial"]) == sorted(partial)
    again = job.run(LocalRunner(), handle_signals=False)
    assert (again.done, again.skipped, again.left) == (2, 0, 0)
    assert len(lines(out / "a.jsonl")) == 400 and not list(out.glob("*.partial"))


def test_ctrl_c_stops_the_job_with_130(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    for name in ("a", "b", "c"):
        make_clip(rec / f"{name}.mp4", frames=300)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(rec), "--out", str(out), "--video", "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.glob("*.partial")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT" in err and "left (rerun the same command to go on)" in err
    statuses = [e["status"] for e in lines(out / "manifest.jsonl")]
    assert statuses[-1] == "interrupted" and "failed" not in statuses


def test_paths_are_made_absolute_for_workers_elsewhere(tmp_path, monkeypatch):
    make_clip(tmp_path / "a.mp4", frames=2)
    (tmp_path / "m.onnx").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    job = BatchJob.create(["a.mp4"], "out", build_config(None, {"model": "m.onnx"}))
    assert job.out == tmp_path / "out" and job.config.model == str(tmp_path / "m.onnx")
    assert job.recordings[0].path == tmp_path / "a.mp4"
    assert BatchJob.create(["a.mp4"], "out", build_config(None, {"model": "demo"})).config.model == "demo"  # a builtin stays a name


def test_ray_given_the_folder_says_where_it_went(tmp_path, capsys):
    make_clip(tmp_path / "a.mp4", frames=3)
    assert cli.main(["run", "--ray", str(tmp_path), "--out", str(tmp_path / "out")]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "--ray took" in err and "put the recordings before --ray" in err and err.count("\n") == 1


def test_a_truncated_file_that_still_plays_is_done_with_a_warning(tmp_path, capsys):
    from tests.test_sources import faststart

    rec = tmp_path / "rec"
    rec.mkdir()
    whole = faststart(make_clip(tmp_path / "c.mp4", frames=60, size=(160, 120)), tmp_path / "fast.mp4")
    (rec / "cut.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert cli.main(["run", str(rec), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    entry = lines(tmp_path / "out" / "manifest.jsonl")[0]
    assert entry["status"] == "done" and 5 < entry["frames"] < 60
    assert entry["warnings"] == [f"ended after {entry['frames']} of the 60 frames it declares (truncated or damaged)"]
    assert f"warning: {rec / 'cut.mp4'}: ended after" in capsys.readouterr().err


def test_the_readme_example_runs_as_written(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### A folder of dashcam recordings"):readme.index("### `rtpipe demo")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("2 0 [] ") and (tmp_path / "results" / "drive-01.jsonl").exists()


@pytest.mark.parametrize("layout, argv, clash", [
    (["front/clip.mp4", "rear/clip.mp4"], ["front", "rear"], "clip.jsonl"),  # two folders, one name
    (["a.mp4", "a.mkv"], ["."], "a.jsonl"),  # one stem, two suffixes
    (["manifest.mp4"], ["."], "manifest.jsonl"),  # the job's own file
    (["x.mp4", "x.events.mp4"], [".", "--line", "0,0.5,1,0.5"], "x.events.jsonl"),  # x's events, x.events' detections
])
def test_recordings_whose_outputs_would_meet_are_refused_before_anything_runs(tmp_path, monkeypatch, capsys, layout, argv, clash):
    rec = tmp_path / "rec"
    for name in layout:
        (rec / name).parent.mkdir(parents=True, exist_ok=True)
        make_clip(rec / name, frames=2)
    monkeypatch.chdir(rec)
    assert cli.main(["run", *argv, "--out", str(tmp_path / "out"), "--quiet"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"would write '{tmp_path / 'out' / clash}'" in err and "rename one of them" in err and err.count("\n") == 1
    assert not list((tmp_path / "out").glob("*.jsonl"))


def test_a_new_job_does_not_replace_files_it_did_not_write(tmp_path, capsys):
    make_clip(tmp_path / "a.mp4", frames=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.jsonl").write_text("precious\n")
    assert cli.main(["run", str(tmp_path / "a.mp4"), "--out", str(out), "--quiet"]) == cli.EXIT_USAGE
    assert "already holds a.jsonl but no job's record of it" in capsys.readouterr().err
    assert (out / "a.jsonl").read_text() == "precious\n"
    assert cli.main(["run", str(tmp_path / "a.mp4"), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert len(lines(out / "a.jsonl")) == 3


@pytest.mark.parametrize("settings", [None, {"model": "other.onnx"}])
def test_a_new_job_refuses_a_manifest_it_cannot_read_unless_its_settings_are_beside_it(tmp_path, capsys, settings):
    make_clip(tmp_path / "a.mp4", frames=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_text('{"name": "a", "sta')  # a torn line: a killed job's, if job.json says it was this one
    if settings is not None:
        (out / "job.json").write_text(json.dumps({"settings": settings}))
    assert cli.main(["run", str(tmp_path / "a.mp4"), "--out", str(out), "--quiet"]) == cli.EXIT_USAGE
    assert "already holds manifest.jsonl but no job's record of it" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["job.json", "manifest.jsonl"][1 - (settings is not None):]


def test_a_job_that_never_started_does_not_hold_the_folder_to_its_settings(tmp_path, capsys):
    make_clip(tmp_path / "a.mp4", frames=3)
    out = tmp_path / "out"
    assert cli.main(["run", str(tmp_path / "a.mp4"), "--out", str(out), "--model", "typo.onnx", "--quiet"]) == cli.EXIT_USAGE
    assert not (out / "job.json").exists()
    assert cli.main(["run", str(tmp_path / "a.mp4"), "--out", str(out), "--quiet"]) == 0


def test_a_rerun_that_fails_leaves_nothing_that_looks_current(tmp_path):
    rec = tmp_path / "rec"
    (rec / "sub").mkdir(parents=True)
    make_clip(rec / "sub" / "a.mp4", frames=3)
    out = tmp_path / "out"
    assert cli.main(["run", str(rec), "--out", str(out), "--quiet"]) == 0
    (rec / "sub" / "a.mp4").write_bytes(os.urandom(3000))  # the recording replaced by a broken one
    assert cli.main(["run", str(rec), "--out", str(out), "--quiet"]) == cli.EXIT_FAILED
    assert sorted(p.name for p in (out / "sub").iterdir()) == []  # the old outputs are gone, and the new run wrote none
    assert lines(out / "manifest.jsonl")[-1]["status"] == "failed"


def test_a_preset_with_one_run_outputs_is_named_in_the_error(tmp_path, capsys):
    make_clip(tmp_path / "a.mp4", frames=2)
    code = cli.main(["run", str(tmp_path / "a.mp4"), "--out", str(tmp_path / "out"), "--config", "configs/batch-files.yaml"])
    assert code == cli.EXIT_USAGE
    assert "configs/batch-files.yaml: 'save' names one run's output" in capsys.readouterr().err


def test_an_unreachable_ray_cluster_is_one_line_at_once(tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'rtpipe[ray]')")
    make_clip(tmp_path / "a.mp4", frames=2)
    started = time.monotonic()
    assert cli.main(["run", str(tmp_path / "a.mp4"), "--out", str(tmp_path / "out"), "--ray", "127.0.0.1:1"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in err and err.strip().count("\n") == 0
    assert time.monotonic() - started < 30
    assert not (tmp_path / "out" / "job.json").exists()


def counts(summary) -> tuple[int, ...]:
    return summary.skipped, summary.done, summary.failed, summary.interrupted, summary.left


def test_the_summary_counts_each_recording_once(tmp_path):
    summary = JobSummary(total=6, manifest=tmp_path / "manifest.jsonl", skipped=1)
    for status in ("done", "retried", "failed", "interrupted"):  # a worker death, then its retry never ran (stopped)
        summary.add({"name": status, "status": status, "error": "x" if status == "failed" else None})
    assert counts(summary) == (1, 1, 1, 1, 2) and sum(counts(summary)) == summary.total
    assert summary.retried == 1  # worker deaths, not recordings


class StoppedAfterTwo:
    """A runner stopped (Ctrl-C) while its second recording ran: one done, one interrupted, the rest never started."""

    def run(self, job, todo, record, progress):
        record(new_entry(todo[0], 1, "here", "done"))
        record(new_entry(todo[1], 1, "here", "interrupted", "the job was stopped"))

    def stop(self):
        pass

    def describe(self):
        return {"kind": "fake"}


def test_a_stopped_job_counts_each_recording_once(tmp_path):
    job = BatchJob.create([str(tmp_path / f"{n}.mp4") for n in "abcdef"], tmp_path / "out", build_config(None, {"model": "demo"}))
    summary = job.run(StoppedAfterTwo(), handle_signals=False)
    assert counts(summary) == (0, 1, 0, 1, 4) and sum(counts(summary)) == summary.total == 6


@pytest.mark.parametrize("existing", [False, True])
def test_a_refused_model_leaves_the_output_folder_as_it_was(tmp_path, capsys, existing):
    make_clip(tmp_path / "a.mp4", frames=3)
    out = tmp_path / "outs" / "out"  # (a parent it creates too)
    if existing:
        out.mkdir(parents=True)
        (out / "notes.txt").write_text("mine\n")
    argv = ["run", str(tmp_path / "a.mp4"), "--out", str(out), "--model", "nonexistent.onnx", "--quiet"]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "model 'nonexistent.onnx' not found" in err and err.count("\n") == 1
    if existing:
        assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine\n"
    else:
        assert not (tmp_path / "outs").exists()


def test_a_refused_job_leaves_an_earlier_jobs_folder_as_it_was(tmp_path, capsys):
    make_clip(tmp_path / "a.mp4", frames=3)
    out = tmp_path / "out"
    assert cli.main(["run", str(tmp_path / "a.mp4"), "--out", str(out), "--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for more in ([], ["--overwrite"]):  # started over: the record is replaced only with the first outcome
        assert cli.main(["run", str(tmp_path / "a.mp4"), "--out", str(out), "--model", "typo.onnx", "--quiet", *more]) == cli.EXIT_USAGE
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    capsys.readouterr()
    assert cli.main(["run", str(tmp_path / "a.mp4"), "--out", str(out)]) == 0  # the earlier job's record still holds
    assert "1 of 1 recordings already done" in capsys.readouterr().err


def test_a_folder_holding_files_of_no_job_is_left_as_it_was(tmp_path):
    make_clip(tmp_path / "a.mp4", frames=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.jsonl").write_text("precious\n")
    assert cli.main(["run", str(tmp_path / "a.mp4"), "--out", str(out), "--quiet"]) == cli.EXIT_USAGE
    assert [p.name for p in out.iterdir()] == ["a.jsonl"]


# ---- a kill at any step of a recording's commit (its outputs put in place, its manifest line written)

class Killed(BaseException):
    """The job killed where it stands: no ``except Exception`` of the job's stops it, as none stops SIGKILL."""


class KillAt:
    """Kills the job (raises Killed) at its k-th step that changes the output folder: before each
    rename (os.replace, in this thread), before each manifest line, and with a manifest line half
    written; or, k a string, at the first step whose description holds it."""

    def __init__(self, mp: pytest.MonkeyPatch, k: int | str):
        self.k, self.steps, self.killed = k, [], False
        replace, record = os.replace, Manifest.record

        def step(what: str) -> None:
            self.steps.append(what)
            if len(self.steps) - 1 == self.k or (isinstance(self.k, str) and self.k in what):
                self.killed = True
                raise Killed(what)

        def replace_or_die(src, dst, *args, **kwargs):
            if threading.current_thread() is threading.main_thread():
                step(f"before renaming {Path(src).name} to {Path(dst).name}")
            return replace(src, dst, *args, **kwargs)

        def record_or_die(manifest, entry):
            what = f"the {entry['status']} line of {entry['name']}"
            step(f"before {what}")
            record(manifest, entry)
            if len(self.steps) == self.k:  # the next step: this line torn (the kill came as it was written)
                self.steps.append(f"with {what} half written")
                self.killed = True
                size = manifest.path.stat().st_size
                os.truncate(manifest.path, size - len(json.dumps(entry)) // 2)
                raise Killed(self.steps[-1])
            self.steps.append(f"after {what}")

        mp.setattr(os, "replace", replace_or_die)
        mp.setattr(Manifest, "record", record_or_die)


def last_entries(manifest: Path) -> dict[str, dict]:
    """Each recording's last line in a manifest a kill may have left (a torn line skipped, as resume does)."""
    last = {}
    for line in manifest.read_text().splitlines() if manifest.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        last[entry["name"]] = entry
    return last


def check_complete(out: Path, frames: dict[str, int], when: str) -> None:
    """Every recording done, each output whole under its own name (the frames all there, the video
    decodable), nothing else left in the folder (no .partial, nothing staged)."""
    last = last_entries(out / "manifest.jsonl")
    assert {n: e["status"] for n, e in last.items()} == dict.fromkeys(frames, "done"), when
    kinds = (".jsonl", ".metrics.json", ".events.jsonl", ".annotated.mp4")
    assert sorted(p.name for p in out.iterdir()) == sorted([".job.lock", "job.json", "manifest.jsonl",
                                                            *(n + k for n in frames for k in kinds)]), when
    for name, n in frames.items():
        assert last[name]["frames"] == n, when
        assert len(lines(out / f"{name}.jsonl")) == n, when
        assert json.loads((out / f"{name}.metrics.json").read_text())["frames_out"] == n, when
        lines(out / f"{name}.events.jsonl")  # (whole JSON lines)
        assert probe(out / f"{name}.annotated.mp4")["frames"] == n, when


def counted(process, ran: list):
    """``process`` that notes the name of each recording it runs in ``ran``."""
    def run(job, rec, *args, **kwargs):
        ran.append(rec.name)
        return process(job, rec, *args, **kwargs)
    return run


def test_a_job_killed_at_any_step_of_a_commit_is_resumed_without_overwrite(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    frames = {"a": 4, "b": 3}
    for name, n in frames.items():
        make_clip(rec / f"{name}.mp4", frames=n, size=(96, 64))
    config = build_config(None, {"model": "demo", "lines": ["0,0.5,1,0.5"]})
    models = load_models(config)
    k = 0
    while True:
        out = tmp_path / f"out-{k}"
        with pytest.MonkeyPatch.context() as mp:
            kill = KillAt(mp, k)
            try:
                BatchJob.create([str(rec)], out, config, video=True).run(LocalRunner(models), handle_signals=False)
            except Killed:
                pass
        if not kill.killed:  # past the last step: the job ran to its end
            break
        when = f"killed at step {k} ({kill.steps[k]})"
        left = {name: e["status"] for name, e in last_entries(out / "manifest.jsonl").items()}
        ran = []
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("pipeline.batch.job.process", counted(process, ran))
            summary = BatchJob.create([str(rec)], out, config, video=True).run(LocalRunner(models), handle_signals=False)
        assert (summary.failed, summary.interrupted, summary.left) == (0, 0, 0), when
        check_complete(out, frames, when)
        finished = {name for name, status in left.items() if status == "done"}
        assert not finished & set(ran), f"{when}: ran {sorted(finished & set(ran))} again, which the killed job had finished"
        k += 1
    check_complete(out, frames, "not killed")
    assert k > 10, kill.steps  # every step of both recordings' commits was a kill point


def test_a_rerun_killed_as_it_puts_the_outputs_in_place_is_resumed_too(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    make_clip(rec / "a.mp4", frames=4, size=(96, 64))
    config = build_config(None, {"model": "demo", "lines": ["0,0.5,1,0.5"]})
    models = load_models(config)
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as mp:
        kill = KillAt(mp, "to a.metrics.json")  # its line written, one output in place, three staged
        with pytest.raises(Killed):
            BatchJob.create([str(rec)], out, config, video=True).run(LocalRunner(models), handle_signals=False)
    assert (out / "a.jsonl").exists() and not (out / "a.metrics.json").exists()
    ran, kills = [], 0
    while True:  # each rerun killed once it has put one more output in place
        with pytest.MonkeyPatch.context() as mp:
            kill = KillAt(mp, 1)
            mp.setattr("pipeline.batch.job.process", counted(process, ran))
            try:
                summary = BatchJob.create([str(rec)], out, config, video=True).run(LocalRunner(models), handle_signals=False)
                break
            except Killed:
                kills += 1
    assert kills == 2 and (summary.skipped, summary.done) == (1, 0), kill.steps  # metrics, events; then the video and done
    assert ran == []  # never run again
    check_complete(out, {"a": 4}, "killed as it was put in place")


KILLED_AFTER = """
import os, signal, sys
from pathlib import Path
replace = os.replace
def replace_then_die(src, dst, *args, **kwargs):
    replace(src, dst, *args, **kwargs)
    if Path(dst).name == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace_then_die
from pipeline import cli
sys.exit(cli.main(sys.argv[2:]))
"""


def test_a_job_sigkilled_as_an_output_appears_is_resumed_without_overwrite(tmp_path, capsys):
    rec = tmp_path / "rec"
    rec.mkdir()
    frames = {"a": 4, "b": 3}
    for name, n in frames.items():
        make_clip(rec / f"{name}.mp4", frames=n, size=(96, 64))
    out = tmp_path / "out"
    argv = ["run", str(rec), "--out", str(out), "--video", "--line", "0,0.5,1,0.5", "--quiet"]
    killed = subprocess.Popen([sys.executable, "-c", KILLED_AFTER, "a.jsonl", *argv], stderr=subprocess.PIPE, text=True)
    _, err = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, err  # killed the moment a.jsonl had its own name
    assert (out / "a.jsonl").exists()
    assert cli.main(argv) == 0, capsys.readouterr().err
    check_complete(out, frames, "after SIGKILL")
    workers = {e["worker"] for e in lines(out / "manifest.jsonl") if e["name"] == "a"}
    assert {w.rsplit(":", 1)[1] for w in workers} == {str(killed.pid)}  # a's run was kept, not run again


def test_a_fifo_with_a_videos_name_is_counted_and_named_not_passed_over(tmp_path, capsys):
    """A named pipe in the folder (before: left out silently, uncounted) is a recording whose run
    fails at once, saying what it is; it is never opened (a read would wait for a writer)."""
    rec = tmp_path / "rec"
    rec.mkdir()
    make_clip(rec / "a.mp4", frames=6, size=(96, 64))
    os.mkfifo(rec / "feed.mp4")
    out = tmp_path / "out"
    assert cli.main(["run", str(rec), "--out", str(out), "--quiet"]) == cli.EXIT_FAILED
    last = {e["name"]: e for e in lines(out / "manifest.jsonl")}
    assert last["a"]["status"] == "done"
    assert last["feed"]["status"] == "failed" and "is a named pipe (FIFO), not a file" in last["feed"]["error"]
