"""Re-streaming: a stream's annotated video pushed into an RTSP server and read back by a client;
a server that is not there does not stop the stream (the push is retried)."""

from __future__ import annotations

import time

import pytest

from pipeline.service import Service, ServiceConfig
from pipeline.service.restream import check_url
from tests.conftest import Publisher, free_port, needs_rtsp_server, open_when_up


def wait_until(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@needs_rtsp_server
def test_a_stream_is_restreamed_to_rtsp_and_read_back(tmp_path):
    server = Publisher(tmp_path / "unused.mp4", "rtsp")  # only its rtsp-server-perl: the service publishes
    server.start_server()
    time.sleep(1.0)  # (rtsp-server-perl refuses a publisher in its first moments, and then keeps refusing that path)
    service = Service(ServiceConfig(outputs=tmp_path / "out", spool=tmp_path / "spool"), destinations=[])
    service.start()
    try:
        sid = service.add({"source": "synthetic:320x180@15", "name": "cam", "lines": ["0,0.5,1,0.5"],
                           "restream": f"rtsp://127.0.0.1:{server.server_port}/live"})
        nowhere = service.add({"source": "synthetic:320x180@15", "name": "nowhere", "restream": f"rtsp://127.0.0.1:{free_port()}/x"})
        wait_until(lambda: service.get(sid)["restream"] is not None and service.get(sid)["restream"]["sent"] >= 15)
        client = open_when_up(server.url, reconnect=0)
        got = []
        for frame in client.frames():
            got.append(frame)
            if len(got) == 10:
                break
        assert all(f.image.shape == (180, 320, 3) for f in got)
        assert float(client.fps) == pytest.approx(15, rel=0.1)
        assert service.get(sid)["restream"]["up"] and service.get(sid)["restream"]["failures"] == 0

        # a server that is not there: the push is retried with a growing pause, the stream runs on
        wait_until(lambda: service.get(nowhere)["restream"]["failures"] >= 2)
        frames = service.get(nowhere)["frames"]
        wait_until(lambda: service.get(nowhere)["frames"] > frames + 10)
        restream = service.get(nowhere)["restream"]
        assert not restream["up"] and restream["sent"] == 0 and "rtsp://127.0.0.1" in restream["last_error"]
    finally:
        service.stop(timeout=10)
        server.kill_server()


@pytest.mark.parametrize("url", ["file:///tmp/x.mp4", "http://host/x", "rtsp://"])
def test_only_push_urls_are_taken(url):
    with pytest.raises(ValueError, match="rtsp"):
        check_url(url)
