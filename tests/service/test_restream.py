"""Re-streaming: a stream's annotated video pushed into an RTSP server and read back by a client;
a server that is down at first does not stop the stream, and gets the video once it is up."""

from __future__ import annotations

import time

import pytest

from pipeline.service import Service, ServiceConfig
from pipeline.service.restream import check_url
from tests.conftest import Publisher, needs_rtsp_server, open_when_up


def wait_until(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@needs_rtsp_server
def test_a_stream_is_restreamed_to_rtsp_and_read_back(tmp_path):
    server = Publisher(tmp_path / "unused.mp4", "rtsp")  # only its rtsp-server-perl: the service publishes
    service = Service(ServiceConfig(outputs=tmp_path / "out", spool=tmp_path / "spool"), destinations=[])
    service.start()
    try:
        sid = service.add({"source": "synthetic:320x180@15", "name": "cam", "lines": ["0,0.5,1,0.5"],
                           "restream": f"rtsp://127.0.0.1:{server.server_port}/live"})
        wait_until(lambda: (service.get(sid)["restream"] or {}).get("failures", 0) >= 1)  # no server yet
        frames = service.get(sid)["frames"]
        wait_until(lambda: service.get(sid)["frames"] > frames + 10)  # the stream runs on regardless
        server.start_server()
        wait_until(lambda: service.get(sid)["restream"]["sent"] >= 15)
        client = open_when_up(server.url, reconnect=0)
        got = []
        for frame in client.frames():
            got.append(frame)
            if len(got) == 10:
                break
        assert all(f.image.shape == (180, 320, 3) for f in got)
        assert float(client.fps) == pytest.approx(15, rel=0.1)
        restream = service.get(sid)["restream"]
        assert restream["up"] and restream["last_error"].startswith("rtsp://127.0.0.1")
    finally:
        service.stop(timeout=10)
        server.kill_server()


@pytest.mark.parametrize("url", ["file:///tmp/x.mp4", "http://host/x", "rtsp://"])
def test_only_push_urls_are_taken(url):
    with pytest.raises(ValueError, match="rtsp"):
        check_url(url)
