"""The browser view (``--serve``): the annotated frames as MJPEG behind a minimal page.

Built on the standard library's threading HTTP server, hardened for what reaches a port:

- every connection has a socket timeout (``TIMEOUT_S``): a client that sends half a request,
  or stops reading the stream, is dropped; at most ``MAX_CLIENTS`` are served at once, the
  next ones get a 503 and are closed, so threads stay bounded;
- the token (``?token=``, URL-decoded) is compared in constant time, and a view bound to an
  address other than loopback always has one (generated and printed when none is given);
- on a loopback address, the ``Host`` header must name a loopback host: a web page the user
  visits cannot reach the view by rebinding its own name to 127.0.0.1;
- nothing from the request is written into the page but the token, escaped;
- a viewer that goes away ends its connection quietly; each frame is JPEG-encoded once,
  however many watch, and only while someone does; the sink thread never waits for an encode.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import secrets
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote

import cv2
import numpy as np

from pipeline.sinks import Sink, SinkError
from pipeline.types import Detections, Frame

TIMEOUT_S = 10.0  # a connection silent (or not reading) this long is closed
MAX_CLIENTS = 16  # connections served at once

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>rtpipe</title>
<style>body{margin:0;background:#111;color:#ddd;font:14px sans-serif}
header{padding:6px 10px}img{display:block;max-width:100vw;max-height:calc(100vh - 32px);margin:auto}</style>
</head><body><header>rtpipe &middot; live view</header><img id="view" src="stream.mjpg{query}" alt="live view"></body></html>
"""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host of a Host header: ``[::1]:8080`` -> ``::1``, ``localhost:8080`` -> ``localhost``."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.split(":", 1)[0]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):  # full: say so and close, no thread
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        pass  # a viewer that went away (or timed out) is no error of the run


class BrowserView(Sink):
    """Serves the annotated frames: GET / is the page, /stream.mjpg the stream, /frame.jpg the
    latest frame. Binds to 127.0.0.1 unless another host is given (an IPv6 one too); a token,
    when there is one, must come with every request as ``?token=...``."""

    needs_image = True

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, token: str | None = None, quality: int = 80):
        if token == "":
            raise SinkError("--token is empty: give a token, or none (off loopback one is then generated)")
        self.quality = quality
        self.loopback = is_loopback(host)
        self.token = token if token is not None or self.loopback else secrets.token_urlsafe(16)
        self.generated_token = token is None and self.token is not None
        self._cond = threading.Condition()
        self._encoding = threading.Lock()
        self._latest: np.ndarray | None = None
        self._jpeg: bytes | None = None
        self._seq = 0
        self._closed = False
        self.encodes = 0
        try:
            self.server = _Server((host, port), self._handler())
        except OSError as exc:
            raise SinkError(f"--serve {host}:{port}: cannot listen ({exc.strerror}); pick another port or host") from exc
        self.host, self.port = host, self.server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/" + (f"?token={quote(self.token, safe='')}" if self.token else "")
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="rtpipe-serve", daemon=True)
        self._thread.start()

    def allowed(self, handler: BaseHTTPRequestHandler, query: str) -> tuple[int, str] | None:
        """None if the request may be served, else (status, why)."""
        if self.loopback and not is_loopback(host_name(handler.headers.get("Host") or "")):
            return 403, "this view answers only to a loopback host name (localhost, 127.0.0.1, [::1])"
        if self.token is not None:
            given = parse_qs(query).get("token", [""])[-1]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return 403, "missing or wrong token"
        return None

    def _handler(self):
        view = self

        class Handler(BaseHTTPRequestHandler):
            timeout = TIMEOUT_S

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                path, _, query = self.path.partition("?")
                refused = view.allowed(self, query)
                if refused is not None:
                    self.send_error(*refused)
                    return
                if path in ("/", "/index.html"):
                    own = f"?token={html.escape(quote(view.token, safe=''))}" if view.token else ""
                    self._send(200, "text/html; charset=utf-8", PAGE.replace("{query}", own).encode())
                elif path == "/frame.jpg":
                    jpeg = view._encoded_latest()
                    if jpeg is None:
                        self.send_error(503, "no frame yet")
                    else:
                        self._send(200, "image/jpeg", jpeg)
                elif path == "/stream.mjpg":
                    view._stream_to(self)
                else:
                    self.send_error(404)

            def _send(self, code, ctype, body):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def _encoded_latest(self) -> bytes | None:
        """The newest frame as JPEG, encoded once per frame whoever asks first (the others wait
        for that encode), outside the frame lock so the sink thread never waits for it."""
        with self._encoding:
            with self._cond:
                if self._jpeg is not None or self._latest is None:
                    return self._jpeg
                image, seq = self._latest, self._seq
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            self.encodes += 1
            jpeg = buf.tobytes() if ok else None
            with self._cond:
                if self._seq == seq:
                    self._jpeg = jpeg
            return jpeg

    def _stream_to(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        seen = -1
        try:
            while True:
                with self._cond:
                    while self._seq == seen and not self._closed:
                        self._cond.wait(0.5)
                    if self._closed and self._seq == seen:
                        return
                    seen = self._seq
                jpeg = self._encoded_latest()
                if jpeg is None:
                    continue
                handler.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                    + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                handler.wfile.flush()
        except OSError:  # the viewer went away, or stopped reading for TIMEOUT_S
            pass

    def write(self, frame: Frame, detections: Detections, image: np.ndarray | None) -> None:
        with self._cond:
            self._latest = frame.image if image is None else image
            self._jpeg = None
            self._seq += 1
            self._cond.notify_all()

    def close(self, complete: bool) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
