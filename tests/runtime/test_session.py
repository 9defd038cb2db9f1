"""The library session: what ``rtpipe run`` runs, from Python — callbacks, streamed results, errors."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ConfigError
from pipeline.runtime import StageError
from pipeline.runtime.session import Result, Session
from pipeline.sinks import SinkError
from tests.conftest import make_clip, probe
from tests.fakes import FailingModel

README = Path(__file__).resolve().parents[2] / "README.md"
CLIP = "synthetic:160x96@30?live=0&frames={n}"


def test_the_readme_example_runs_as_written(tmp_path):
    """The README's Python example, verbatim, in a fresh interpreter."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) >= 2 and lines[-1].startswith("FPS")
    assert probe(tmp_path / "out.mp4")["frames"] == 60


def test_the_readme_tracking_example_runs_as_written(tmp_path):
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### From Python"):]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[1]
    assert "lines=" in code
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    *events, counts = r.stdout.splitlines()
    assert events and all(e.split()[3] in ("line_in", "line_out") and e.endswith(" gate") for e in events)
    assert "'gate'" in counts


def test_stream_gives_every_frame_in_order_with_its_picture(tmp_path):
    session = Session.from_settings(source=CLIP.format(n=12), model="tiny-seg", json=str(tmp_path / "d.jsonl"))
    results = list(session.stream(draw=True))
    assert [r.frame.index for r in results] == list(range(12))
    assert all(isinstance(r, Result) and r.image.shape == r.frame.image.shape for r in results)
    assert any((r.image != r.frame.image).any() for r in results if len(r.detections))
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert [len(json.loads(x)["detections"]) for x in lines] == [len(r.detections) for r in results]
    assert session.metrics["frames_out"] == 12


def test_run_with_a_callback_returns_and_writes_the_metrics(tmp_path):
    got = []
    session = Session.from_settings(source=CLIP.format(n=9), model="tiny-seg", batch=2, metrics_json=str(tmp_path / "m.json"))
    metrics = session.run(on_result=got.append, handle_sigint=False)
    assert [r.frame.index for r in got] == list(range(9)) and all(r.image is None for r in got)
    assert json.loads((tmp_path / "m.json").read_text())["frames_out"] == metrics["frames_out"] == 9
    with pytest.raises(RuntimeError, match="runs once"):
        session.run()


def test_leaving_the_stream_early_finalises_the_outputs(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=200, size=(160, 96))
    out = tmp_path / "o.mp4"
    session = Session.from_settings(source=str(clip), model="tiny-seg", save=str(out))
    for r in session.stream():
        if r.frame.index == 5:
            break
    assert session.metrics["interrupted"] and not session.metrics["aborted"]
    done = probe(out)["frames"]
    assert 6 <= done < 200 and done == session.metrics["frames_out"]
    assert not Path(str(out) + ".partial").exists()


def test_a_failing_stage_is_raised_in_the_callers_loop(tmp_path):
    session = Session.from_settings(source=CLIP.format(n=50), model="tiny-seg", save=str(tmp_path / "o.mp4"))
    session.model = FailingModel(session.model, "infer", at_call=3)
    seen = []
    with pytest.raises(StageError, match="stage 'infer' failed"):
        for r in session.stream():
            seen.append(r.frame.index)
    assert len(seen) < 50 and not (tmp_path / "o.mp4").exists()
    # the frames that reached the video before the failure stay, as .partial (on a loaded machine
    # infer can fail before any frame reached the sink, which then never opened its file)
    assert session.kept_partial() == ([tmp_path / "o.mp4.partial"] if seen else [])


@pytest.mark.parametrize(
    "settings, error, message",
    [
        ({}, ConfigError, "no source"),
        ({"source": "synthetic:64x48@30", "model": "torchvision:fcos_resnet50_fpn"}, ConfigError, "needs --weights"),
        ({"source": "synthetic:64x48@30", "save": "SAME", "json": "SAME"}, ConfigError, "share one path"),
        ({"source": "synthetic:64x48@30", "save": "missing-folder/o.mp4"}, SinkError, "does not exist"),
        ({"source": "synthetic:64x48@30", "conf": 2}, ConfigError, "settings: key 'conf'"),
        ({"source": "synthetic:64x48@30", "metrics_json": "missing-folder/m.json"}, SinkError, "does not exist"),
    ],
)
def test_bad_settings_fail_before_anything_runs(tmp_path, monkeypatch, settings, error, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message):
        Session.from_settings(**settings)
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing left half-made


def test_several_sources_stream_through_one_model(tmp_path):
    session = Session.from_settings(source=[CLIP.format(n=4), CLIP.format(n=6) + "&seed=2"], model="tiny-seg", batch=2)
    results = list(session.stream())
    per_source = {sid: [r.frame.index for r in results if r.frame.source_id == sid] for sid in (0, 1)}
    assert per_source == {0: list(range(4)), 1: list(range(6))}
    assert np.isclose(session.metrics["batches"]["mean_size"], 10 / session.metrics["batches"]["count"])


def test_an_error_while_finishing_after_an_early_exit_is_raised_and_kept(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=100, size=(160, 96))
    session = Session.from_settings(source=str(clip), model="tiny-seg", json=str(tmp_path / "d.jsonl"))
    jsonl = session.sinks[0][0]

    def full_disk(complete):
        raise OSError(28, "No space left on device")

    jsonl.close = full_disk
    results = session.stream()
    next(results)
    with pytest.raises(StageError, match="No space left on device"):
        results.close()  # what leaving the loop does
    assert isinstance(session.error, StageError) and session.metrics is None


def test_a_session_that_never_runs_releases_its_outputs():
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Session.from_settings(source=CLIP.format(n=5), model="tiny-seg", serve=f"127.0.0.1:{port}") as session:
        assert session.sinks[0][0].url.startswith(f"http://127.0.0.1:{port}/")
    again = Session.from_settings(source=CLIP.format(n=5), model="tiny-seg", serve=f"127.0.0.1:{port}")  # the port is free again
    assert again.run(handle_sigint=False)["frames_out"] == 5


def test_stream_gives_tracked_detections_and_the_events_of_each_frame(tmp_path):
    from pipeline.demo.clip import write_clip

    clip, _ = write_clip(tmp_path, seed=7, frames=60)
    session = Session.from_settings(source=str(clip), model="demo", lines=["gate=0,0.6,1,0.6"])
    results = list(session.stream())
    assert len(results) == 60 and all(r.detections.tracker_id is not None for r in results)
    events = [e for r in results for e in r.events]
    assert events
    for r in results:
        assert all(e.frame == r.frame.index and e.tracker_id in r.detections.tracker_id for e in r.events)
    counts = session.metrics["tracking"]["counts"]["gate"]
    assert {k: v["all"] for k, v in counts.items()} == {k: sum(e.event == k for e in events) for k in ("line_in", "line_out")}


CAL = "0.3,0.6,0.7,0.6,0.9,1,0.1,1=0,30,3.5,30,3.5,5,0,5"


def test_a_calibrated_run_writes_speeds_and_a_heatmap(tmp_path):
    pytest.importorskip("trackers")
    session = Session.from_settings(source="synthetic:320x192@30?live=0&frames=45", model="demo", calibrate=CAL,
                                    json=str(tmp_path / "d.jsonl"), heatmap=str(tmp_path / "heat.png"))
    metrics = session.run()
    assert metrics["tracking"]["tracker"] == "botsort" and metrics["tracking"]["calibration"]["ground_m"][0] == [0, 30]
    dets = [d for line in (tmp_path / "d.jsonl").read_text().splitlines() for d in json.loads(line)["detections"]]
    assert dets and all("speed_kmh" in d for d in dets)
    assert all(d["speed_kmh"] is None for d in dets if d["tracker_id"] is None)
    assert any(isinstance(d["speed_kmh"], float) for d in dets)  # tracks followed for half a second have one
    heat = np.load(tmp_path / "heat.npy", allow_pickle=False)
    assert heat.shape == (192, 320) and heat.sum() == pytest.approx(sum(d["tracker_id"] is not None for d in dets), rel=0.01)
    assert (tmp_path / "heat.png").stat().st_size > 0 and not list(tmp_path.glob("*.partial"))


def test_a_failed_run_leaves_its_heatmap_partial(tmp_path):
    session = Session.from_settings(source=CLIP.format(n=50), model="tiny-seg", heatmap=str(tmp_path / "heat.png"))
    session.model = FailingModel(session.model, "infer", at_call=3)
    with pytest.raises(StageError, match="stage 'infer' failed"):
        session.run(handle_sigint=False)
    assert not (tmp_path / "heat.png").exists() and not (tmp_path / "heat.npy").exists()
    assert session.kept_partial() in ([], [tmp_path / "heat.png.partial"])  # (none when no frame got through first)


def test_a_heatmap_that_would_overwrite_an_output_is_refused(tmp_path):
    (tmp_path / "heat.npy").write_bytes(b"")
    with pytest.raises(ConfigError, match="heat.npy' exists: give --overwrite"):
        Session.from_settings(source=CLIP.format(n=5), model="tiny-seg", heatmap=str(tmp_path / "heat.png"))


def test_a_run_with_reid_and_smoothed_boxes_keeps_the_detections_and_reports_its_settings(tmp_path):
    """--reid hist and --smooth-boxes over the demo model: the same frames and detections as
    without (ids on tracked ones; smoothed boxes near the detected ones), settings in the metrics."""
    from pipeline.demo.clip import write_clip

    clip, _ = write_clip(tmp_path, seed=7, frames=40, size=(640, 360))
    plain = Session.from_settings(source=str(clip), model="demo", track="botsort", json=str(tmp_path / "a.jsonl")).run(handle_sigint=False)
    both = Session.from_settings(source=str(clip), model="demo", reid="hist", smooth_boxes=True,
                                 json=str(tmp_path / "b.jsonl")).run(handle_sigint=False)
    assert both["tracking"]["settings"]["reid"] == "hist" and "track_activation_threshold" in both["tracking"]["settings"]
    a = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == 40 and plain["frames_out"] == 40
    moved = []
    for ra, rb in zip(a, b):
        assert [d["score"] for d in ra["detections"]] == [d["score"] for d in rb["detections"]]
        for da, db in zip(ra["detections"], rb["detections"]):
            assert (da["tracker_id"] is None) == (db["tracker_id"] is None)
            moved.append(np.abs(np.subtract(da["xyxy"], db["xyxy"])).max())
            if db["tracker_id"] is None:
                assert da["xyxy"] == db["xyxy"]
    assert 0 < np.median(moved) < 5  # smoothed, not replaced by something else
