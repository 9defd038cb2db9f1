"""The browser view (--serve): what it shows, and what it withstands from the network."""

import os
import select
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
    monkeypatch.setattr(bv, "HEADER_TIMEOUT_S", 0.5)
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
        time.sleep(1.0)  # past the header deadline: closed, and no thread left
        assert threading.active_count() <= before + 1
        for s in socks:
            s.settimeout(1.0)
            assert s.recv(1) == b""
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


def test_viewers_that_go_away_leave_no_traceback_and_each_frame_is_encoded_once(capfd, monkeypatch):
    monkeypatch.setattr(bv, "MAX_CLIENTS_PER_ADDRESS", bv.MAX_CLIENTS)  # six viewers, all from 127.0.0.1
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


# Lock-out: connections that never finish a request, or finish one without the token, must not
# keep a viewer with the token from being served.

AUTHORISED_WITHIN_S = 1.0  # the target; served in ~0.05 s here


class Held:
    """Connections that never finish a request: ``idle`` send nothing, ``partial`` send only "G",
    ``trickle`` send one more byte of an endless header every ``every`` seconds."""

    def __init__(self, port, idle=0, partial=0, trickle=0, every=0.5, source="127.0.0.1"):
        self.socks = []
        for kind, n in (("idle", idle), ("partial", partial), ("trickle", trickle)):
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
                if kind == "partial":
                    s.sendall(b"G")
                self.socks.append(s)
        self.trickling = self.socks[len(self.socks) - trickle:] if trickle else []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, args=(every,), daemon=True)
        self.thread.start()

    def _trickle(self, every):
        head = b"GET / HTTP/1.1\r\nX-Slow: "
        live = list(self.trickling)
        i = 0
        while live and not self.stop.wait(0 if i == 0 else every):
            byte = head[i:i + 1] or b"a"
            for s in list(live):
                try:
                    s.sendall(byte)
                except OSError:  # closed by the view
                    live.remove(s)
            i += 1

    def open_ones(self):
        """The connections the view has not closed (a closed one reads as end of stream or a reset)."""
        ready, _, _ = select.select(self.socks, [], [], 0)
        closed = set()
        for s in ready:
            try:
                if s.recv(4096, socket.MSG_PEEK) == b"":
                    closed.add(s)
            except OSError:
                closed.add(s)
        return [s for s in self.socks if s not in closed]

    def wait_all_closed(self, timeout):
        """Seconds until the view closed every one, or None if some are still open after ``timeout``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.open_ones():
                return time.monotonic() - t0
            time.sleep(0.05)
        return None

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for s in self.socks:
            s.close()


def served_within(view, limit=AUTHORISED_WITHIN_S):
    """The page and a first MJPEG frame, fetched with the view's token; asserts both came within ``limit`` s."""
    t0 = time.monotonic()
    status, page = get(view)
    assert status == 200 and b"stream.mjpg" in page
    img = read_first_jpeg(view.url.replace("/?", "/stream.mjpg?") if "?" in view.url else view.url + "stream.mjpg")
    took = time.monotonic() - t0
    assert img is not None and img.shape == (48, 64, 3)
    assert took < limit, f"the authorised viewer waited {took:.2f} s"


def test_connections_that_send_only_part_of_a_request_do_not_lock_out_a_viewer():
    """The issue: 16 connections that send only "G" (and one trickling a byte every 0.5 s) took every slot."""
    view = BrowserView("127.0.0.1", 0, token="s3cret")
    held = Held(view.port, partial=bv.MAX_CLIENTS, trickle=1, every=0.5)
    try:
        feed(view, stop_after=5)
        time.sleep(0.3)  # all of them connected and seen by the view
        assert len(held.open_ones()) == bv.MAX_CLIENTS + 1
        served_within(view)
    finally:
        held.close()
        view.close(True)


def test_fifty_slow_or_half_open_connections_are_held_and_closed_at_the_header_deadline():
    view = BrowserView("127.0.0.1", 0, token="s3cret")
    t0 = time.monotonic()
    held = Held(view.port, idle=20, partial=20, trickle=10, every=0.25)  # a byte each 0.25 s extends nothing
    try:
        feed(view, stop_after=5)
        time.sleep(0.3)
        assert len(held.open_ones()) == 50  # held: none refused at the door
        served_within(view)
        took = held.wait_all_closed(timeout=bv.HEADER_TIMEOUT_S + 2.0)
        assert took is not None, f"{len(held.open_ones())} slow connections still open"
        assert time.monotonic() - t0 < bv.HEADER_TIMEOUT_S + 1.5  # the deadline counts from connecting
        served_within(view)
    finally:
        held.close()
        view.close(True)


def read_status(s, timeout=2.0) -> int:
    s.settimeout(timeout)
    return int(s.recv(64).split(b" ", 2)[1])


def request(port, path, source="127.0.0.1"):
    """A connection that sends a whole GET for ``path`` and is kept open without reading."""
    s = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    return s


def test_the_token_is_checked_before_a_slot_is_taken(monkeypatch):
    """The issue: the 503 came before any token check. A wrong token is 403 whether slots are free or not,
    and wrong-token connections kept open hold no slot."""
    monkeypatch.setattr(bv, "MAX_CLIENTS_PER_ADDRESS", bv.MAX_CLIENTS, raising=False)  # every client here is 127.0.0.1
    view = BrowserView("127.0.0.1", 0, token="s3cret")
    socks = []
    try:
        feed(view, stop_after=5)
        for _ in range(bv.MAX_CLIENTS):
            socks.append(request(view.port, "/stream.mjpg?token=wrong"))
            assert read_status(socks[-1]) == 403
        served_within(view)
        time.sleep(0.5)  # that viewer's slot is free once a frame meets its closed socket (frames: every 30 ms)
        for _ in range(bv.MAX_CLIENTS):  # the slots full of viewers with the token
            socks.append(request(view.port, "/stream.mjpg?token=s3cret"))
            assert read_status(socks[-1]) == 200
        socks.append(request(view.port, "/stream.mjpg?token=s3cret"))
        assert read_status(socks[-1]) == 503
        socks.append(request(view.port, "/stream.mjpg?token=wrong"))
        assert read_status(socks[-1]) == 403
    finally:
        for s in socks:
            s.close()
        view.close(True)


def can_bind(address):
    try:
        with socket.socket() as probe:
            probe.bind((address, 0))
        return True
    except OSError:
        return False


def test_one_address_gets_at_most_its_share_of_slots_and_pending_connections():
    """Per address: at most MAX_CLIENTS_PER_ADDRESS viewers (the next get 503, other addresses are still
    served), and at most MAX_PENDING_PER_ADDRESS unfinished requests — a new one closes that address's oldest,
    so a viewer is never refused because its own address is crowded with slow connections."""
    view = BrowserView("127.0.0.1", 0)
    socks, held = [], None
    try:
        feed(view, stop_after=5)
        for _ in range(bv.MAX_CLIENTS_PER_ADDRESS):
            socks.append(request(view.port, "/stream.mjpg"))
            assert read_status(socks[-1]) == 200
        socks.append(request(view.port, "/stream.mjpg"))
        assert read_status(socks[-1]) == 503
        if can_bind("127.0.0.2"):  # Linux: all of 127/8 is loopback
            socks.append(request(view.port, "/stream.mjpg", source="127.0.0.2"))
            assert read_status(socks[-1]) == 200
        socks.pop(0).close()  # one viewer leaves: its slot is free again (once a frame meets the closed socket)
        time.sleep(0.5)
        socks.append(request(view.port, "/stream.mjpg"))
        assert read_status(socks[-1]) == 200

        extra = 5
        held = Held(view.port, idle=bv.MAX_PENDING_PER_ADDRESS + extra)
        time.sleep(0.3)
        still = held.open_ones()
        assert still == held.socks[extra:]  # the oldest ones made room
    finally:
        if held:
            held.close()
        for s in socks:
            s.close()
        view.close(True)
