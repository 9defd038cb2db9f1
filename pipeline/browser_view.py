"""The browser view (``--serve``): the annotated frames as MJPEG behind a minimal page.

Hardened for what reaches a port. A connection goes through two steps:

1. **The gate** (one thread, one selector, no thread per connection) reads the request line and
   headers. It must have all of them within ``HEADER_TIMEOUT_S`` of connecting — one deadline
   for the whole request, so a byte now and then does not extend it — and within
   ``MAX_HEADER_BYTES``; otherwise it is closed. Up to ``MAX_PENDING`` connections wait there, at
   most ``MAX_PENDING_PER_ADDRESS`` from one address (an IPv6 address counts by its /64). A new
   connection is never refused for lack of room: it closes the oldest waiting one of its address
   (or, all full, the oldest of all), which is the one nearest its deadline anyway. So connections
   that are held half-open cost a socket each, never a thread or a slot, and cannot keep out a
   client that sends its request at once.
2. A complete request is then checked — the ``Host`` and the token — and only an allowed one
   takes one of ``MAX_CLIENTS`` slots (at most ``MAX_CLIENTS_PER_ADDRESS`` per address), each
   served on its own thread, so threads stay bounded. A refused one gets its 403 (wrong token,
   foreign Host), 501 or 400 from the gate and takes no slot; an allowed one with no slot free
   gets a 503. A viewer that stops reading the stream is dropped after ``TIMEOUT_S``.

Further:

- the token (``?token=``, URL-decoded) is compared in constant time, and a view bound to an
  address other than loopback always has one (generated and printed when none is given);
- on a loopback address, the ``Host`` header must name a loopback host: a web page the user
  visits cannot reach the view by rebinding its own name to 127.0.0.1;
- nothing from the request is written into the page but the token, escaped;
- a viewer that goes away ends its connection quietly; each frame is JPEG-encoded once,
  however many watch, and only while someone does; the sink thread never waits for an encode.
"""

from __future__ import annotations

import errno
import hmac
import html
import io
import ipaddress
import secrets
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from http.client import HTTPException, parse_headers
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, quote

import cv2
import numpy as np

from pipeline.sinks import Sink, SinkError
from pipeline.types import Detections, Frame

HEADER_TIMEOUT_S = 2.0  # the whole request (line and headers) must come within this of connecting
MAX_HEADER_BYTES = 8192  # a longer request line + headers is refused (431)
MAX_PENDING = 256  # connections whose request is still coming in, all addresses together
MAX_PENDING_PER_ADDRESS = 64  # ... from one address (IPv6: one /64)
MAX_CLIENTS = 16  # requests served at once (viewers of the stream, and the page and frame fetches)
MAX_CLIENTS_PER_ADDRESS = 8  # ... for one address (IPv6: one /64): half, so one address cannot take them all
TIMEOUT_S = 10.0  # a served connection that does not read (or send) this long is closed

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


def address_key(host: str) -> str:
    """What the per-address limits count by: the address; for IPv6 its /64, which one host
    usually has whole (IPv4-mapped IPv6 counts as the IPv4 address)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def refusal(code: int, why: str = "") -> bytes:
    """A whole HTTP response that refuses, with the reason as its plain-text body."""
    status = HTTPStatus(code)
    body = f"{code} {status.phrase}: {why or status.description}\n".encode()
    return (f"HTTP/1.0 {code} {status.phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


@dataclass
class Request:
    """A complete request as the gate read it: what the checks need, and the bytes for the handler."""

    path: str
    query: str
    host: str  # the Host header, "" when none
    raw: bytes


def parse_request(raw: bytes) -> Request | tuple[int, str]:
    """The request line and headers at the start of ``raw``, read as the handler will read them,
    or (status, why)."""
    line, _, rest = raw.partition(b"\n")
    words = line.decode("latin-1").rstrip("\r").split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        return 400, "bad request line"
    try:
        headers = parse_headers(io.BytesIO(rest))  # up to the first blank line
    except HTTPException:
        return 431, "too many headers, or one too long"
    if words[0] != "GET":
        return 501, "only GET is served"
    path, _, query = words[1].partition("?")
    return Request(path, query, headers.get("Host") or "", raw)


class Slots:
    """At most ``MAX_CLIENTS`` requests served at once, ``MAX_CLIENTS_PER_ADDRESS`` per address."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_address: Counter[str] = Counter()

    def take(self, key: str) -> str | None:
        """None if a slot was taken for ``key``, else why not."""
        with self._lock:
            if sum(self._by_address.values()) >= MAX_CLIENTS:
                return f"{MAX_CLIENTS} viewers already; try again later"
            if self._by_address[key] >= MAX_CLIENTS_PER_ADDRESS:
                return f"{MAX_CLIENTS_PER_ADDRESS} viewers from this address already"
            self._by_address[key] += 1
            return None

    def give(self, key: str) -> None:
        with self._lock:
            self._by_address[key] -= 1
            if self._by_address[key] <= 0:
                del self._by_address[key]


@dataclass
class _Pending:
    key: str
    address: tuple
    deadline: float
    data: bytearray = field(default_factory=bytearray)


class Gate:
    """Accepts connections and reads their requests on one thread (see the module's docstring);
    hands each complete, allowed request to ``serve(sock, address, request)`` on a thread of its
    own while it holds a slot."""

    def __init__(self, host: str, port: int, check, serve):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((host, port))
            self.listener.listen(socket.SOMAXCONN)
        except OSError:
            self.listener.close()
            raise
        self.listener.setblocking(False)
        self.server_address = self.listener.getsockname()
        self.check, self.serve = check, serve
        self.slots = Slots()
        self.pending: dict[socket.socket, _Pending] = {}  # oldest first
        self.pending_by_address: Counter[str] = Counter()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rtpipe-serve", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                wait = 0.1
                if self.pending:
                    wait = min(wait, max(0.0, next(iter(self.pending.values())).deadline - time.monotonic()))
                for key, _ in self._selector.select(wait):
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj in self.pending:
                        self._read(key.fileobj)
                self._expire()
        finally:
            for sock in list(self.pending):
                self._drop(sock)
            self._selector.close()
            self.listener.close()

    def _accept(self) -> None:
        for _ in range(64):  # a burst at a time, then the others get their turn
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: the oldest waiting connection makes room
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    if self.pending:
                        self._drop(next(iter(self.pending)))
                    else:
                        self._stop.wait(0.1)  # held by others: no busy loop on a listener that stays ready
                return
            sock.setblocking(False)
            key = address_key(address[0])
            if self.pending_by_address[key] >= MAX_PENDING_PER_ADDRESS:
                self._drop(next(s for s, p in self.pending.items() if p.key == key))
            elif len(self.pending) >= MAX_PENDING:
                self._drop(next(iter(self.pending)))
            self.pending[sock] = _Pending(key, address, time.monotonic() + HEADER_TIMEOUT_S)
            self.pending_by_address[key] += 1
            self._selector.register(sock, selectors.EVENT_READ)

    def _read(self, sock: socket.socket) -> None:
        waiting = self.pending[sock]
        try:
            chunk = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(sock)
            return
        waiting.data += chunk
        if len(waiting.data) > MAX_HEADER_BYTES:
            self._unpend(sock)
            self._answer(sock, 431, f"request line and headers over {MAX_HEADER_BYTES} bytes")
        elif b"\r\n\r\n" in waiting.data or b"\n\n" in waiting.data:
            self._unpend(sock)
            self._dispatch(sock, waiting)

    def _dispatch(self, sock: socket.socket, waiting: _Pending) -> None:
        """A complete request: refused (no slot taken), or served on its own thread in a slot."""
        request = parse_request(bytes(waiting.data))
        refused = request if isinstance(request, tuple) else self.check(request)
        if refused is not None:
            self._answer(sock, *refused)
            return
        busy = self.slots.take(waiting.key)
        if busy is not None:
            self._answer(sock, 503, busy)
            return
        threading.Thread(target=self._serve_in_slot, args=(sock, waiting, request),
                         name="rtpipe-serve-viewer", daemon=True).start()

    def _serve_in_slot(self, sock: socket.socket, waiting: _Pending, request: Request) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(TIMEOUT_S)
            self.serve(sock, waiting.address, request)
        except OSError:  # the viewer went away, or stopped reading for TIMEOUT_S
            pass
        finally:
            self.slots.give(waiting.key)
            _close(sock)

    def _expire(self) -> None:
        now = time.monotonic()
        while self.pending:
            sock, waiting = next(iter(self.pending.items()))
            if waiting.deadline > now:
                return
            self._drop(sock)  # too slow: no answer, it sent no whole request to answer

    def _unpend(self, sock: socket.socket) -> None:
        waiting = self.pending.pop(sock)
        self.pending_by_address[waiting.key] -= 1
        if self.pending_by_address[waiting.key] <= 0:
            del self.pending_by_address[waiting.key]
        self._selector.unregister(sock)

    def _drop(self, sock: socket.socket) -> None:
        self._unpend(sock)
        _close(sock)

    def _answer(self, sock: socket.socket, code: int, why: str) -> None:
        """Refuse on the gate's thread: one send of a small response (never waits), then close."""
        try:
            sock.send(refusal(code, why))
        except OSError:
            pass
        _close(sock)

    def shutdown(self) -> None:
        self._stop.set()
        if self.thread is not threading.current_thread():
            self.thread.join()


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    sock.close()


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
        self._handler_class = self._handler()
        try:
            self.server = Gate(host, port, self.allowed, self._serve)
        except OSError as exc:
            raise SinkError(f"--serve {host}:{port}: cannot listen ({exc.strerror}); pick another port or host") from exc
        self.host, self.port = host, self.server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/" + (f"?token={quote(self.token, safe='')}" if self.token else "")

    def allowed(self, request: Request) -> tuple[int, str] | None:
        """None if the request may be served, else (status, why). The gate asks before a slot is taken."""
        if self.loopback and not is_loopback(host_name(request.host)):
            return 403, "this view answers only to a loopback host name (localhost, 127.0.0.1, [::1])"
        if self.token is not None:
            given = parse_qs(request.query).get("token", [""])[-1]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return 403, "missing or wrong token"
        return None

    def _serve(self, sock: socket.socket, address: tuple, request: Request) -> None:
        """Answer an allowed request (in a slot, on its own thread)."""
        self._handler_class((sock, request.raw), address, self)

    def _handler(self):
        view = self

        class Handler(BaseHTTPRequestHandler):
            """Reads the request the gate already read (and allowed), answers on the socket."""

            def setup(self):
                self.connection, raw = self.request
                self.rfile = io.BytesIO(raw)
                self.wfile = self.connection.makefile("wb")

            def finish(self):
                try:
                    self.wfile.flush()
                except OSError:
                    pass
                self.wfile.close()

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                path = self.path.partition("?")[0]
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
