"""The browser view (--serve): what it shows, and what it withstands from the network."""

import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import quote

import cv2
import numpy as np
import pytest

import pipeline.browser_view as bv
from pipeline.browser_view import BrowserView
from pipeline.sinks import SinkError
from pipeline.types import Detections, Frame


def read_first_jpeg(url, timeout=5.0) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        buf = b""
        while b"\r\n\r\n" not in buf or len(buf) < buf.index(b"\r\n\r\n") + 4 + int(
            buf.split(b"Content-Length: ")[1].split(b"\r\n")[0]
        ):
            buf += r.read(1024)
        head, body = buf.split(b"\r\n\r\n", 1)
        n = int(head.split(b"Content-Length: ")[1])
        return cv2.imdecode(np.frombuffer(body[:n], np.uint8), cv2.IMREAD_COLOR)


def feed(view, stop_after=3.0):

    def run():
        t0, i = time.monotonic(), 0
        while time.monotonic() - t0 < stop_after and not view._closed:
            img = np.zeros((48, 64, 3), np.uint8)
            img[:] = (255, 0, 0)  # blue
            view.write(Frame(img, i, 0.0, time.monotonic()), Detections.empty(), None)
            i += 1
            time.sleep(0.03)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_browser_view_streams_mjpeg_and_serves_page():
    view = BrowserView("127.0.0.1", 0)
    try:
        feed(view)
        page = urllib.request.urlopen(view.url, timeout=5).read().decode()
        assert 'src="stream.mjpg"' in page
        img = read_first_jpeg(view.url + "stream.mjpg")
        assert img.shape == (48, 64, 3) and img[..., 0].mean() > 200 and img[..., 2].mean() < 40
    finally:
        view.close(True)


def test_browser_view_token_and_busy_port():
    view = BrowserView("127.0.0.1", 0, token="s3cret")
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{view.port}/", timeout=5)
        assert e.value.code == 403
        assert "stream.mjpg?token=s3cret" in urllib.request.urlopen(view.url, timeout=5).read().decode()
        with pytest.raises(SinkError, match="cannot listen"):
            BrowserView("127.0.0.1", view.port)
    finally:
        view.close(True)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.browser
def test_browser_view_in_headless_chromium(tmp_path):
    """A real browser renders the page and decodes the MJPEG stream: the screenshot shows the frame."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium for the browser-view test: .ci/run installs Debian's chromium")
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")
    view = BrowserView("127.0.0.1", 0)
    try:
        feed(view, stop_after=30)
        shot = tmp_path / "shot.png"
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=640,400", f"--screenshot={shot}", view.url]
        subprocess.run(cmd, capture_output=True, timeout=60)
        img = cv2.imread(str(shot))
        assert img is not None, "Chromium wrote no screenshot"
        blue = (img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)
        assert blue.sum() > 64 * 48 * 0.5, "the decoded frame is not on the page"
    finally:
        view.close(True)


def get(view, path="/", host=None, query=None):
    """(status, body) of a GET on the view; ``host`` sets the Host header, ``query`` replaces the view's own."""
    q = view.url.partition("?")[2] if query is None else query
    url = f"http://127.0.0.1:{view.port}{path}" + (f"?{q}" if q else "")
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(2_000_000)
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_half_sent_requests_hold_a_bounded_number_of_threads_and_time_out(monkeypatch):
    monkeypatch.setattr(bv, "TIMEOUT_S", 0.5)
    view = BrowserView("127.0.0.1", 0)
    before = threading.active_count()
    socks = []
    try:
        for _ in range(60):  # slowloris: the request line, and nothing more
            s = socket.create_connection(("127.0.0.1", view.port))
            s.sendall(b"GET / HTTP/1.1\r\n")
            socks.append(s)
        time.sleep(0.2)
        assert threading.active_count() <= before + bv.MAX_CLIENTS + 1
        time.sleep(1.0)  # past the timeout: their threads are gone
        assert threading.active_count() <= before + 1
        assert get(view)[0] == 200  # and a viewer is served
    finally:
        for s in socks:
            s.close()
        view.close(True)


@pytest.mark.parametrize("token", ["a&b", "s p=a+c%e", "plain"])
def test_any_token_can_be_entered_and_a_wrong_one_is_refused(token):
    view = BrowserView("127.0.0.1", 0, token=token)
    try:
        assert get(view)[0] == 200  # the view's URL carries it encoded
        assert get(view, query="token=" + quote(token[:-1], safe=""))[0] == 403
        assert get(view, query="")[0] == 403
    finally:
        view.close(True)


def test_a_loopback_view_answers_only_to_loopback_host_names():
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example."""
    view = BrowserView("127.0.0.1", 0)
    try:
        assert get(view, host=f"evil.example:{view.port}")[0] == 403
        for host in (f"localhost:{view.port}", f"127.0.0.1:{view.port}", f"[::1]:{view.port}"):
            assert get(view, host=host)[0] == 200, host
    finally:
        view.close(True)


def test_the_request_is_not_written_into_the_page():
    view = BrowserView("127.0.0.1", 0)
    try:
        status, page = get(view, query='x="><script>alert(1)</script>')
        assert status == 200 and b"<script>" not in page and b"alert" not in page
    finally:
        view.close(True)
    view = BrowserView("127.0.0.1", 0, token='"><i>')
    try:
        status, page = get(view)
        assert status == 200 and b"<i>" not in page
    finally:
        view.close(True)


def test_a_view_on_another_address_gets_a_token_when_none_is_given():
    view = BrowserView("0.0.0.0", 0)
    try:
        assert view.token and view.generated_token and f"?token={view.token}" in view.url
        assert get(view, query="")[0] == 403 and get(view)[0] == 200
    finally:
        view.close(True)


def test_viewers_that_go_away_leave_no_traceback_and_each_frame_is_encoded_once(capfd):
    view = BrowserView("127.0.0.1", 0)
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)  # ~4 MB as JPEG: a write that meets a closed socket
    try:
        view.write(Frame(big, 0, 0.0, time.monotonic()), Detections.empty(), None)
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", view.port))
            s.sendall(f"GET /frame.jpg HTTP/1.1\r\nHost: 127.0.0.1:{view.port}\r\n\r\n".encode())
            s.close()
        watchers = []
        for _ in range(6):
            s = socket.create_connection(("127.0.0.1", view.port))
            s.sendall(f"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{view.port}\r\n\r\n".encode())
            watchers.append(s)
        time.sleep(0.3)
        encodes, frames = view.encodes, 10
        small = np.zeros((48, 64, 3), np.uint8)
        for i in range(frames):
            view.write(Frame(small, i + 1, 0.0, time.monotonic()), Detections.empty(), None)
            time.sleep(0.05)
        assert view.encodes - encodes <= frames  # six viewers, one encode per frame
        for s in watchers:
            s.close()
        time.sleep(0.3)
    finally:
        view.close(True)
    assert "Traceback" not in capfd.readouterr().err


def test_an_ipv6_address_can_be_served():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback on this machine ({exc})")
    view = BrowserView("::1", 0)
    try:
        assert view.url.startswith("http://[::1]:")
        with urllib.request.urlopen(view.url, timeout=5) as r:
            assert r.status == 200
    finally:
        view.close(True)


def test_an_empty_token_is_refused_not_taken_as_no_check():
    with pytest.raises(SinkError, match="--token is empty"):
        BrowserView("0.0.0.0", 0, token="")
