"""The service as a library object: streams added, changed and removed while others run, on one
shared model; events out; outputs finalised on removal; the state file brings streams back;
sources a remote caller must not open are refused."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.config import ConfigError
from pipeline.service import Service, ServiceConfig, StreamNotFound
from tests.conftest import make_clip, probe

LIVE = "synthetic:640x360@15"


class Collect:
    """A destination keeping what it is given."""

    name = "collect"

    def __init__(self):
        self.records: list[dict] = []

    def deliver(self, record: dict, payload: str) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


def wait_until(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def service(tmp_path):
    made = []

    def make(**settings) -> tuple[Service, Collect]:
        out = Collect()
        s = Service(ServiceConfig(outputs=tmp_path / "out", spool=tmp_path / "spool", **settings), destinations=[out])
        s.start()
        made.append(s)
        return s, out

    yield make
    for s in made:
        s.stop(timeout=10)


def test_streams_come_and_go_while_the_others_run_on_one_model(service, tmp_path):
    svc, out = service(state=tmp_path / "state.json")
    a = svc.add({"source": LIVE, "name": "a", "lines": ["mid=0,0.5,1,0.5"]})
    wait_until(lambda: svc.get(a)["frames"] >= 10)
    b = svc.add({"source": LIVE, "name": "b", "save": True})
    wait_until(lambda: svc.get(b)["frames"] >= 10)
    assert svc.streams[a].models is svc.streams[b].models  # one loaded model for both
    before = svc.get(a)["frames"]
    last = svc.remove("b")  # by name as well as by id
    assert last["state"] == "stopped" and last["outputs"]
    video = last["outputs"][0]
    assert video.endswith(".mp4") and probe(video)["frames"] >= 10  # finalised: playable, not .partial
    wait_until(lambda: svc.get(a)["frames"] >= before + 15)  # a ran on throughout
    assert svc.get(a)["state"] == "up"
    with pytest.raises(StreamNotFound):
        svc.get(b)
    assert [s["name"] for s in json.loads((tmp_path / "state.json").read_text())["streams"]] == ["a"]
    wait_until(lambda: any(r["event"] in ("line_in", "line_out") for r in out.records))
    ups = [r for r in out.records if r["event"] == "stream_up"]
    assert {r["stream"] for r in ups} == {"a", "b"}
    assert any(r["event"] == "stream_down" and r["stream"] == "b" for r in out.records)
    crossing = next(r for r in out.records if r["event"].startswith("line"))
    assert crossing["name"] == "mid" and crossing["stream"] == "a" and len(crossing["id"]) == 32


def test_a_restarted_service_brings_its_streams_back(service, tmp_path):
    state = tmp_path / "state.json"
    videos = tmp_path / "videos"
    videos.mkdir()
    clip = make_clip(videos / "clip.mp4", frames=200)
    first, _ = service(state=state, allow_files=videos, streams=[{"source": LIVE, "name": "seeded"}])
    first.add({"source": LIVE, "name": "cam1", "zones": ["door=0,0,0.5,0,0.5,1,0,1"], "conf": 0.3})
    first.add({"source": "rtsp://admin:s3cret@127.0.0.1:9/live", "name": "cam2"})
    first.add({"source": str(clip), "name": "rec"})
    first.remove("seeded")
    assert state.stat().st_mode & 0o077 == 0  # private: it holds camera URLs
    first.stop(timeout=10)
    clip.unlink()  # the recording went away meanwhile
    second, _ = service(state=state, allow_files=videos, streams=[{"source": LIVE, "name": "seeded"}])
    streams = {s["name"]: s for s in second.list()}
    assert set(streams) == {"cam1", "cam2", "rec"}  # the state file, not the seed list, once it exists
    assert streams["cam1"]["settings"]["zones"] == ["door=0,0,0.5,0,0.5,1,0,1"] and streams["cam1"]["settings"]["conf"] == 0.3
    assert streams["rec"]["state"] == "failed" and "not a file" in streams["rec"]["error"]  # and the others start
    assert streams["cam2"]["settings"]["source"] == "rtsp://***@127.0.0.1:9/live"
    wait_until(lambda: second.get("cam1")["frames"] > 0)


def test_lines_and_zones_change_while_the_stream_runs(service):
    svc, _ = service()
    sid = svc.add({"source": LIVE, "name": "a", "lines": ["old=0,0.5,1,0.5"]})
    wait_until(lambda: svc.get(sid)["frames"] >= 5)
    frames = svc.get(sid)["frames"]
    svc.update(sid, lines=["new=0.5,0,0.5,1"], zones=["z=0,0,1,0,1,1"])
    wait_until(lambda: set(svc.get(sid)["counts"]) == {"new", "z"})
    wait_until(lambda: svc.get(sid)["frames"] > frames + 5)  # the stream went on
    assert svc.get(sid)["settings"]["lines"] == ["new=0.5,0,0.5,1"]
    plain = svc.add({"source": LIVE, "name": "plain"})
    wait_until(lambda: svc.get(plain)["frames"] >= 1)
    with pytest.raises(ValueError, match="runs no tracker"):
        svc.update(plain, lines=["x=0,0.5,1,0.5"], zones=None)


def test_a_file_stream_runs_to_its_end_with_its_outputs_complete(service, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    make_clip(folder / "clip.mp4", frames=40)
    svc, out = service(allow_files=folder)
    sid = svc.add({"source": str(folder / "clip.mp4"), "name": "rec", "json": True, "save": True})
    wait_until(lambda: svc.get(sid)["state"] == "ended")
    status = svc.get(sid)
    assert status["frames"] == 40
    jsonl = next(p for p in status["outputs"] if p.endswith(".jsonl"))
    assert len(open(jsonl).read().splitlines()) == 40
    assert any(r["event"] == "stream_down" and r["reason"] == "ended" for r in out.records)


@pytest.mark.parametrize("spec, error", [
    ({"source": "/etc/passwd", "name": "x"}, "only inside the folder given by --allow-files"),
    ({"source": "file:///etc/passwd", "name": "x"}, "the service opens"),
    ({"source": "concat:/etc/passwd", "name": "x"}, "only inside the folder"),
    ({"source": LIVE, "name": "../up"}, "name"),
    ({"source": LIVE, "name": "x", "conf": 2}, "conf"),
    ({"source": LIVE, "name": "x", "save": "/etc/cron.d/x"}, "save"),
    ({"source": LIVE, "name": "x", "lines": ["0,0,0,0"]}, "the two points are the same"),
    ({"source": LIVE, "name": "x", "restream": "file:///tmp/x.mp4"}, "restream"),
])
def test_what_the_service_refuses(service, spec, error):
    svc, _ = service()
    with pytest.raises(ConfigError, match=error) as err:
        svc.add(spec)
    assert "\n" not in str(err.value) and not svc.streams


def test_files_outside_the_allowed_folder_and_names_in_use_are_refused(service, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = make_clip(tmp_path / "outside.mp4", frames=5)
    svc, _ = service(allow_files=allowed)
    with pytest.raises(ConfigError, match="outside the folder"):
        svc.add({"source": str(allowed / ".." / "outside.mp4"), "name": "x"})
    with pytest.raises(ConfigError, match="not a file"):
        svc.add({"source": str(allowed / "missing.mp4"), "name": "x"})
    assert outside.exists()
    svc.add({"source": LIVE, "name": "x"})
    with pytest.raises(ConfigError, match="already called 'x'"):
        svc.add({"source": LIVE, "name": "x"})


def test_a_stream_that_fails_before_its_first_frame_says_so(service):
    svc, out = service()
    sid = svc.add({"source": "rtsp://127.0.0.1:9/none", "name": "bad", "reconnect": 0})
    wait_until(lambda: svc.get(sid)["state"] == "failed")
    assert "rtsp://127.0.0.1:9/none" in svc.get(sid)["error"]
    wait_until(lambda: any(r["event"] == "stream_failed" for r in out.records))
    assert [r["event"] for r in out.records if r["stream"] == "bad"] == ["stream_failed"]  # no up, so no down
