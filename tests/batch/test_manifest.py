"""The manifest: what resume trusts, what it refuses."""

from __future__ import annotations

import json

import pytest

from pipeline.batch.manifest import LOCK, Manifest, stat_of
from pipeline.config import ConfigError


def entry(name, path, status="done", **more):
    size, mtime = stat_of(path) or (None, None)
    return {"name": name, "input": str(path), "status": status, "size": size, "mtime": mtime, **more}


def test_done_needs_the_same_input_and_every_output(tmp_path):
    src, out = tmp_path / "a.mp4", tmp_path / "out"
    src.write_bytes(b"abc")
    m = Manifest(out, {"conf": 0.25})
    outputs = {"detections": out / "a.jsonl"}
    m.record(entry("a", src))
    assert not m.is_done("a", src, outputs)  # its output is missing
    outputs["detections"].write_text("{}\n")
    assert m.is_done("a", src, outputs)
    src.write_bytes(b"abcd")  # the recording changed
    assert not m.is_done("a", src, outputs)
    m.record(entry("a", src, "failed"))
    assert not m.is_done("a", src, outputs)
    m.close()


def test_last_line_wins_and_a_torn_line_is_ignored(tmp_path):
    src, out = tmp_path / "a.mp4", tmp_path / "out"
    src.write_bytes(b"abc")
    m = Manifest(out, {})
    m.record(entry("a", src, "retried"))
    m.record(entry("a", src, "done"))
    m.close()
    with open(out / "manifest.jsonl", "a") as f:
        f.write('{"name": "b", "status": "do')  # killed mid-write
    again = Manifest(out, {})
    assert again.last["a"]["status"] == "done" and "b" not in again.last
    again.close()


def test_other_settings_are_refused_unless_started_over(tmp_path):
    src, out = tmp_path / "a.mp4", tmp_path / "out"
    src.write_bytes(b"abc")
    m = Manifest(out, {"conf": 0.25, "model": "demo"})
    m.close()
    assert not (out / "job.json").exists()  # nothing ran: the folder is not held to these settings
    m = Manifest(out, {"conf": 0.4, "model": "demo"})
    m.record(entry("a", src))
    m.close()
    with pytest.raises(ConfigError, match=r"conf: 0.4 then, 0.5 now.*--overwrite") as err:
        Manifest(out, {"conf": 0.5, "model": "demo"})
    assert "\n" not in str(err.value)
    m = Manifest(out, {"conf": 0.5, "model": "demo"}, restart=True)
    assert not m.last and (out / "manifest.jsonl").read_text()  # started over with the first outcome, not before
    m.record(entry("a", src))
    m.close()
    assert [json.loads(line)["status"] for line in (out / "manifest.jsonl").read_text().splitlines()] == ["done"]
    assert json.loads((out / "job.json").read_text())["settings"]["conf"] == 0.5


def test_a_torn_line_does_not_swallow_the_next_entry(tmp_path):
    src, out = tmp_path / "a.mp4", tmp_path / "out"
    src.write_bytes(b"abc")
    out.mkdir()
    (out / "manifest.jsonl").write_text('{"name": "x", "sta')
    m = Manifest(out, {})
    m.record(entry("a", src))
    m.close()
    again = Manifest(out, {})
    assert again.last["a"]["status"] == "done"
    again.close()


def test_one_job_at_a_time_in_a_folder(tmp_path):
    first = Manifest(tmp_path / "out", {})
    with pytest.raises(ConfigError, match="another rtpipe job is running"):
        Manifest(tmp_path / "out", {})
    first.close()
    Manifest(tmp_path / "out", {}).close()  # free again
    assert (tmp_path / "out" / LOCK).exists()


def test_undo_removes_only_what_a_job_without_outcomes_created(tmp_path):
    src = tmp_path / "a.mp4"
    src.write_bytes(b"abc")
    Manifest(tmp_path / "new" / "out", {}).close(undo=True)
    assert not (tmp_path / "new").exists()
    out = tmp_path / "out"
    out.mkdir()
    Manifest(out, {}).close(undo=True)
    assert not list(out.iterdir())
    m = Manifest(out, {})
    m.record(entry("a", src))
    m.close(undo=True)  # it has an outcome: nothing is undone
    assert sorted(p.name for p in out.iterdir()) == [".job.lock", "job.json", "manifest.jsonl"]
