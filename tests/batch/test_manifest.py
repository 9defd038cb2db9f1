"""The manifest: what resume trusts, what it refuses."""

from __future__ import annotations

import json
import os
from pathlib import Path

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


def test_a_done_line_is_durable_before_its_outputs_take_their_names(tmp_path, monkeypatch):
    src, out = tmp_path / "a.mp4", tmp_path / "out"
    src.write_bytes(b"abc")
    m = Manifest(out, {})
    (out / ".a.staged.jsonl").write_text("{}\n")
    (out / ".a.metrics.staged.json").write_text("{}")
    seen, replace = [], os.replace

    def replace_seeing(a, b):
        if Path(b).name != "job.json":  # (written with the first line)
            seen.append((Path(b).name, [json.loads(line)["status"] for line in (out / "manifest.jsonl").read_text().splitlines()]))
        replace(a, b)

    monkeypatch.setattr(os, "replace", replace_seeing)
    m.commit(entry("a", src, outputs={"detections": "a.jsonl", "metrics": "a.metrics.json"}))
    m.close()
    assert seen == [("a.jsonl", ["done"]), ("a.metrics.json", ["done"])]
    assert sorted(p.name for p in out.iterdir()) == [".job.lock", "a.jsonl", "a.metrics.json", "job.json", "manifest.jsonl"]
    assert json.loads((out / "manifest.jsonl").read_text())["sizes"] == {"detections": 3, "metrics": 2}


def test_an_output_gone_before_its_commit_fails_the_recording(tmp_path):
    src, out = tmp_path / "a.mp4", tmp_path / "out"
    src.write_bytes(b"abc")
    m = Manifest(out, {})
    (out / ".a.staged.jsonl").write_text("{}\n")
    done = entry("a", src, outputs={"detections": "a.jsonl", "metrics": "a.metrics.json"})
    m.commit(done)
    m.close()
    assert done["status"] == "failed" and "a.metrics.staged.json' was gone" in done["error"] and done["outputs"] == {}
    assert not (out / "a.jsonl").exists() and m.last["a"]["status"] == "failed"


def test_finish_puts_in_place_only_what_a_done_line_accounts_for(tmp_path):
    src, out = tmp_path / "a.mp4", tmp_path / "out"
    src.write_bytes(b"abc")
    m = Manifest(out, {})
    m.record(entry("a", src, outputs={"detections": "a.jsonl", "metrics": "a.metrics.json"}, sizes={"detections": 3, "metrics": 2}))
    m.record(entry("b", src, outputs={"detections": "b.jsonl"}, sizes={"detections": 10}))
    m.record(entry("c", src, outputs={"detections": "../c.jsonl"}, sizes={"detections": 3}))
    m.record(entry("d", src, "failed", outputs={"detections": "d.jsonl"}, sizes={"detections": 3}))
    m.close()
    (out / "a.jsonl").write_text("{}\n")  # killed after its first rename
    (out / ".a.metrics.staged.json").write_text("{}")
    (out / ".b.staged.jsonl").write_text("cut\n")  # not the size its line records: not this run's whole output
    (tmp_path / ".c.staged.jsonl").write_text("{}\n")  # outside OUT
    (out / ".d.staged.jsonl").write_text("{}\n")  # no done line
    again = Manifest(out, {})
    assert again.finish() == ["a"]
    assert again.is_done("a", src, {"detections": out / "a.jsonl", "metrics": out / "a.metrics.json"})
    assert (out / "a.metrics.json").read_text() == "{}" and not (out / ".a.metrics.staged.json").exists()
    assert not again.is_done("b", src, {"detections": out / "b.jsonl"}) and (out / ".b.staged.jsonl").exists()
    assert not (tmp_path / "c.jsonl").exists() and not (out / "d.jsonl").exists()
    again.close()


@pytest.mark.parametrize("job, ours", [({"conf": 0.25}, True), ({"conf": 0.5}, False), (None, False)])
def test_a_manifest_with_only_a_torn_line_is_this_jobs_only_beside_its_settings(tmp_path, job, ours):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_text('{"name": "a", "sta')  # a job killed as it wrote its first line
    if job is not None:
        (out / "job.json").write_text(json.dumps({"settings": job}))
    m = Manifest(out, {"conf": 0.25})
    assert m.is_ours() is ours and not m.last
    m.close()
    assert not Manifest(out, {"conf": 0.25}, restart=True).is_ours()  # started over: nothing here is its own
