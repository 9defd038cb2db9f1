"""``rtpipe serve``: settings from ``--config service.yaml`` and the flags, the Service started,
its API served by uvicorn in a thread, and the main thread waiting for a signal: SIGINT, SIGTERM
or SIGHUP finalise every stream's outputs, then exit 130, 143 or 129 (as ``rtpipe run``)."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import threading
from collections.abc import Callable

from pydantic import ValidationError

from pipeline.config import ConfigError, explain, read_preset

FLAGS = {"model": "--model", "conf": "--conf", "device": "--device", "outputs": "--outputs", "state": "--state",
         "allow_files": "--allow-files", "mqtt": "--mqtt", "mqtt_topic": "--mqtt-topic", "webhook": "--webhook",
         "spool": "--spool", "spool_mb": "--spool-mb"}
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}

HELP = """\
Run rtpipe as a service: streams are added, changed and removed over an HTTP API while it runs,
each on the shared model (one per model spec), in its own threads, so one never holds another.
Line/zone events and stream up/down events go to MQTT (QoS 1) and webhooks through a bounded
on-disk spool: nothing is lost while a destination is down. /metrics is Prometheus' format.

  curl -X POST localhost:8000/streams -H 'Content-Type: application/json' \\
       -d '{"source": "rtsp://cam/live", "name": "gate", "lines": ["0,0.5,1,0.5"]}'

API docs at http://HOST:PORT/docs. Off loopback a token is required (generated and printed
when --token is not given). SIGTERM finalises every stream's outputs and exits 143.
"""


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="run as a service: streams added and removed over an HTTP API, events to MQTT/webhooks",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--config", metavar="YAML", help="service settings (keys: the flags' names, and streams: a list of streams)")
    s.add_argument("--listen", default="127.0.0.1:8000", metavar="HOST:PORT", help="where the API listens (default 127.0.0.1:8000)")
    s.add_argument("--token", help="the API's bearer token (default $RTPIPE_TOKEN; required off loopback: generated and printed "
                                   "when not given)")
    s.add_argument("--state", metavar="JSON", help="keep the streams in this file; a restarted service brings them back")
    s.add_argument("--model", help="the streams' default model (default demo)")
    s.add_argument("--conf", type=float, help="the streams' default minimum score (default 0.25)")
    s.add_argument("--device", help="cpu or cuda[:N] (default cpu)")
    s.add_argument("--outputs", metavar="DIR", help="folder of the streams' saved video and detections (default serve-outputs)")
    s.add_argument("--allow-files", metavar="DIR", help="video files inside DIR may be streams (default: no local files)")
    s.add_argument("--mqtt", metavar="URL", help="MQTT broker for the events: mqtt://[USER:PASS@]HOST[:PORT]")
    s.add_argument("--mqtt-topic", metavar="TEMPLATE", help="MQTT topic, with {stream} and {event} (default rtpipe/{stream}/events)")
    s.add_argument("--webhook", action="append", metavar="URL", help="POST every event to URL (repeatable)")
    s.add_argument("--spool", metavar="DIR", help="folder of the events waiting for a destination (default serve-spool)")
    s.add_argument("--spool-mb", type=float, help="each destination's spool cap, MiB; events past it are dropped and counted "
                                                  "(default 64)")
    s.add_argument("--quiet", action="store_true", help="print only errors")
    s.add_argument("--debug", action="store_true", help="tracebacks and native library logs")


def service_config(args):
    from pipeline.service.service import ServiceConfig

    values = read_preset(args.config) if args.config else {}
    given = {k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None}
    try:
        return ServiceConfig.model_validate({**values, **given})
    except ValidationError as exc:
        raise ConfigError(explain(exc, args.config or "serve", {k: f for k, f in FLAGS.items() if k in given})) from None


def listen_on(listen: str) -> socket.socket:
    """A bound, listening socket for HOST:PORT (or PORT), or a one-line ConfigError."""
    m = re.fullmatch(r"(?:(\[[0-9a-fA-F:]+\]|[\w.\-]+):)?(\d{1,5})", listen)
    if not m or not 0 <= int(m.group(2)) < 65536:
        raise ConfigError(f"--listen {listen!r}: give HOST:PORT or PORT, e.g. 127.0.0.1:8000")
    host, port = (m.group(1) or "127.0.0.1").strip("[]"), int(m.group(2))
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as exc:
        raise ConfigError(f"--listen {listen}: cannot listen there: {exc.strerror or exc} (another service on that port? "
                          "give another, e.g. --listen 127.0.0.1:8001)") from None
    return sock


def serve(args, say: Callable[[str], None], print_line: Callable[[str], None]) -> int:
    try:
        import uvicorn

        from pipeline.service.api import make_app
    except ImportError as exc:
        raise ConfigError(f"rtpipe serve needs the service extra ({exc.name} is missing): pip install 'rtpipe[serve]'") from None
    from pipeline.browser_view import is_loopback
    from pipeline.service.service import Service

    config = service_config(args)
    sock = listen_on(args.listen)
    host, port = sock.getsockname()[:2]
    loopback = is_loopback(host)
    given = args.token or os.environ.get("RTPIPE_TOKEN") or None
    token = given or (None if loopback else secrets.token_urlsafe(24))
    got: list[str] = []
    stop = threading.Event()

    def on_signal(signum, _frame):
        got.append(signal.Signals(signum).name)
        stop.set()

    for name in SIGNAL_EXIT:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_signal)
    service, server, thread = Service(config), None, None
    try:
        service.start()
        server = uvicorn.Server(uvicorn.Config(make_app(service, token, loopback), log_level="warning", access_log=False,
                                               timeout_graceful_shutdown=2))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="rtpipe-api", daemon=True)
        thread.start()
        shown = f"[{host}]" if ":" in host else host
        if not args.quiet:
            print_line(f"rtpipe serve: http://{shown}:{port} (API docs at /docs), {len(service.streams)} stream(s), "
                       f"events to {', '.join(d['destination'] for d in service.outbox.stats()) or 'no destination'}")
        if token is not None and given is None:
            print_line(f"token (send 'Authorization: Bearer TOKEN'): {token}")
        while not stop.wait(0.5):
            if not thread.is_alive():
                raise ConfigError("the API server stopped by itself (see the lines above)")
    finally:
        service.stop()  # first: the streams finalise their outputs, and their views end
        if server is not None:
            server.should_exit = True
            thread.join(10)
        sock.close()
    say(f"stopped by {got[0]}: every stream's outputs finalised")
    return SIGNAL_EXIT[got[0]]
