"""``rtpipe serve`` as a user runs it, in a subprocess: a live stream and a file stream added over
HTTP, /metrics and the MJPEG view read, line events received through a real Mosquitto broker
(stopped and started again in the middle) and a webhook, a stream removed while the other runs
on, SIGTERM (exit 143, every output playable), and a restart that brings the streams back and
delivers what was still spooled: no event is lost at either destination, none arrives twice by
webhook, and over MQTT at most the one publish in flight when the broker stopped (QoS 1)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import Mosquitto, Publisher, Subscriber, WebhookReceiver, free_port, make_clip, needs_ffmpeg, needs_mosquitto, probe

pytest.importorskip("fastapi", reason="rtpipe serve needs its extra (pip install 'rtpipe[serve]')")


class Serve:
    """``rtpipe serve`` in a subprocess, and calls to its API."""

    def __init__(self, args: list[str], log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--listen", f"127.0.0.1:{self.port}", *args],
                                     stdout=open(log.with_suffix(".out"), "w"), stderr=open(log, "w"))
        self.wait(lambda: self.call("GET", "/health")[0] == 200, what="the API")

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        request = urllib.request.Request(self.base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"null") if path != "/metrics" else answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return 0, None

    def stream(self, name: str) -> dict:
        return self.call("GET", f"/streams/{name}")[1]

    def wait(self, check, timeout: float = 90.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert self.proc.poll() is None, f"rtpipe serve exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    def metric(self, line_start: str) -> float:
        text = self.call("GET", "/metrics")[1]
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def mjpeg_part(url: str) -> bytes:
    """The first JPEG of an MJPEG response."""
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        head = answer.readline() + answer.readline() + answer.readline() + answer.readline()
        size = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        return answer.read(size)


def watch(url: str) -> None:
    """Read an MJPEG view until the server ends it."""
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            while answer.read(65536):
                pass
    except OSError:
        pass


@needs_mosquitto
@needs_ffmpeg
def test_the_service_end_to_end(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_clip(videos / "clip.mp4", frames=60)
    make_clip(tmp_path / "loop.mp4", frames=50, size=(320, 180))
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    sub, hook = Subscriber(broker), WebhookReceiver()
    assert sub.subscribed.wait(30)
    args = ["--state", str(tmp_path / "state.json"), "--outputs", str(tmp_path / "out"), "--spool", str(tmp_path / "spool"),
            "--allow-files", str(videos), "--mqtt", broker.url, "--webhook", hook.url]
    serve = Serve(args, tmp_path / "serve.log")
    try:
        with Publisher(tmp_path / "loop.mp4", "http") as net:
            # a live stream with a counting line, a file stream, and a network stream
            assert serve.call("POST", "/streams", {"source": "synthetic:640x360@15", "name": "cam", "save": True,
                                                   "lines": ["mid=0,0.5,1,0.5"]})[0] == 201
            assert serve.call("POST", "/streams", {"source": str(videos / "clip.mp4"), "name": "rec", "json": True})[0] == 201
            assert serve.call("POST", "/streams", {"source": net.url, "name": "net"})[0] == 201
            serve.wait(lambda: serve.stream("rec")["state"] == "ended" and serve.stream("net")["frames"] >= 10, what="rec and net")
            assert serve.stream("rec")["frames"] == 60
            assert mjpeg_part(f"{serve.base}/streams/cam/view")[:2] == b"\xff\xd8"  # a JPEG, drawn for the viewer
            assert serve.metric('rtpipe_stream_up{stream="cam"}') == 1.0
            serve.wait(lambda: any(m["event"].startswith("line") for m, _ in sub.messages), what="a line event over MQTT")

            # the broker goes away: events wait in the spool, and all arrive once it is back
            broker.stop()
            spooled = serve.metric("rtpipe_events_spooled")
            serve.wait(lambda: serve.metric("rtpipe_events_spooled") > spooled, what="events spooled while the broker is down")
            broker.start()
            serve.wait(lambda: serve.metric('rtpipe_events_spooled{destination="mqtt') == 0, what="the spool to empty")

            # removing a stream does not stop the other
            before = serve.stream("cam")["frames"]
            status, last = serve.call("DELETE", "/streams/net")
            assert status == 200 and last["state"] == "stopped"
            serve.wait(lambda: serve.stream("cam")["frames"] >= before + 15, what="cam to go on")
            assert serve.stream("cam")["state"] == "up" and serve.call("GET", "/streams/net")[0] == 404

        watching = threading.Thread(target=watch, args=(f"{serve.base}/streams/cam/view",), daemon=True)
        watching.start()  # a viewer still watching when SIGTERM comes does not hold the shutdown
        time.sleep(0.5)
        assert serve.terminate() == 143
        watching.join(5)
        assert not watching.is_alive()
        outputs = sorted((tmp_path / "out").rglob("*"))
        assert not [p for p in outputs if p.name.endswith(".partial")]
        video = next(p for p in outputs if p.parent.name == "cam" and p.suffix == ".mp4")
        assert probe(video)["frames"] >= 30
        detections = next(p for p in outputs if p.parent.name == "rec")
        assert len(detections.read_text().splitlines()) == 60

        # a restarted service brings back the streams (not the removed one) and delivers what was left
        serve = Serve(args, tmp_path / "serve2.log")
        assert sorted(s["name"] for s in serve.call("GET", "/streams")[1]) == ["cam", "rec"]
        serve.wait(lambda: serve.stream("cam")["frames"] > 0, what="cam again")
        assert serve.terminate() == 143
        time.sleep(1.0)
        mqtt = [m["id"] for m, dup in sub.messages if not dup]  # (a broker may redeliver one in flight, flagged dup)
        webhook = [b["id"] for b in hook.bodies]
        # none twice: at most the one publish in flight when the broker was stopped can be sent again (QoS 1: its
        # PUBACK may be lost with the broker; the consumer drops it by its id), and none twice by webhook
        assert len(mqtt) - len(set(mqtt)) <= 1 and len(webhook) == len(set(webhook))
        assert set(mqtt) == set(webhook)  # none lost on the way to either
        kinds = {b["event"] for b in hook.bodies}
        assert {"stream_up", "stream_down"} <= kinds and kinds & {"line_in", "line_out"}
        ups = sorted(b["stream"] for b in hook.bodies if b["event"] == "stream_up")
        downs = sorted(b["stream"] for b in hook.bodies if b["event"] == "stream_down")
        assert ups == downs and ups.count("cam") == 2 and {"net", "rec"} <= set(ups)  # both runs, to the last event made while stopping
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()
        sub.close()
        hook.close()
        broker.stop()


@pytest.mark.parametrize("args, error", [
    (["--listen", "nope:port"], "--listen 'nope:port': give HOST:PORT"),
    (["--mqtt", "http://broker:1883"], "--mqtt 'http://broker:1883': give mqtt://HOST"),
    (["--spool-mb", "0"], "--spool-mb"),
    (["--config", "missing.yaml"], "config file 'missing.yaml' not found"),
    (["taken"], "cannot listen there"),
])
def test_bad_settings_stop_serve_with_one_line(tmp_path, args, error):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        if args == ["taken"]:
            args = ["--listen", f"127.0.0.1:{busy.getsockname()[1]}"]
        r = subprocess.run([sys.executable, "-m", "pipeline", "serve", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and error in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
