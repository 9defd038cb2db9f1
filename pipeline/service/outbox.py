"""Events out of the service, none lost: each record goes first to every destination's spool
(on disk, bounded), and a thread per destination delivers the spool's records in order,
acknowledging one only once the destination has (an MQTT PUBACK, a webhook's 2xx).

- MQTT (``mqtt://[USER:PASS@]HOST[:1883]``, ``mqtts://`` for TLS): QoS 1, to a topic made from a
  template (``{stream}``, ``{event}``). A publish not acknowledged within ``TIMEOUT_S`` drops the
  connection (so paho does not resend it behind the spool's back) and is tried again.
- Webhook (``http(s)://...``): one POST per record, JSON, ``TIMEOUT_S`` each; 2xx is delivered.
- A destination that is down is retried with a doubling pause (``BACKOFF_S``); what a full
  spool refuses is counted as dropped. Every record carries a unique ``id``: a consumer drops
  the rare duplicate (delivered, but the acknowledgement lost on the way back).
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipeline.config import ConfigError
from pipeline.service.spool import Spool

TIMEOUT_S = 5.0
BACKOFF_S = (0.25, 30.0)  # first and longest pause between tries of a destination that is down
DEFAULT_TOPIC = "rtpipe/{stream}/events"


class DeliveryError(Exception):
    """The destination did not take the record (down, refused, timed out)."""


class Mqtt:
    """An MQTT broker, QoS 1 (paho-mqtt)."""

    def __init__(self, url: str, topic: str = DEFAULT_TOPIC):
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            raise ConfigError("--mqtt needs paho-mqtt: pip install 'rtpipe[serve]'") from None
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"--mqtt {url!r}: give mqtt://HOST[:1883] (or mqtts:// for TLS)")
        try:
            topic.format(stream="s", event="e")
        except (KeyError, IndexError, ValueError):
            raise ConfigError(f"--mqtt-topic {topic!r}: a topic with {{stream}} and {{event}} at most, "
                              f"e.g. {DEFAULT_TOPIC}") from None
        self.host, self.tls = parts.hostname, parts.scheme == "mqtts"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.auth = (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
        self.topic = topic
        self.name = f"mqtt://{self.host}:{self.port}"
        self._client = None

    def _connect(self):
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rtpipe-{uuid.uuid4().hex[:12]}")
        if self.auth:
            client.username_pw_set(*self.auth)
        if self.tls:
            client.tls_set()
        connected = threading.Event()
        client.on_connect = lambda c, u, flags, reason, props: reason.is_failure or connected.set()
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise DeliveryError(f"cannot connect: {exc.strerror or exc}") from None
        client.loop_start()
        if not connected.wait(TIMEOUT_S):
            self._drop(client)
            raise DeliveryError("the broker did not accept the connection")
        return client

    @staticmethod
    def _drop(client) -> None:
        client.disconnect()
        client.loop_stop()

    def deliver(self, record: dict, payload: str) -> None:
        if self._client is None or not self._client.is_connected():
            if self._client is not None:
                self._drop(self._client)
                self._client = None
            self._client = self._connect()
        topic = self.topic.format(stream=record.get("stream", ""), event=record.get("event", ""))
        info = self._client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:  # not queued (disconnected) / queue full
            self.close()
            raise DeliveryError(str(exc)) from None
        if not info.is_published():
            self.close()
            raise DeliveryError(f"no acknowledgement within {TIMEOUT_S:g} s")

    def close(self) -> None:
        if self._client is not None:
            self._drop(self._client)
            self._client = None


class Webhook:
    """An HTTP(S) endpoint: one JSON POST per record."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--webhook {url!r}: give an http:// or https:// URL")
        self.url, self.name = url, f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"

    def deliver(self, record: dict, payload: str) -> None:
        request = urllib.request.Request(self.url, data=payload.encode(), method="POST",
                                         headers={"Content-Type": "application/json", "X-Rtpipe-Event-Id": record["id"]})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise DeliveryError(str(getattr(exc, "reason", None) or exc)) from None

    def close(self) -> None:
        pass


@dataclass
class Delivery:
    """One destination, its spool and the thread that empties it."""

    destination: Mqtt | Webhook
    spool: Spool
    published: int = 0
    failed: int = 0  # tries that failed (each is retried)
    last_error: str | None = None
    down: bool = False  # the last try failed
    thread: threading.Thread | None = field(default=None, repr=False)

    def stats(self) -> dict:
        return {"destination": self.destination.name, "published": self.published, "failed": self.failed,
                "spooled": self.spool.pending, "dropped": self.spool.dropped, "up": not self.down, "last_error": self.last_error}


class Outbox:
    """Records to every destination, through their spools under ``folder``, ``cap_bytes`` each."""

    def __init__(self, destinations: list, folder: str | Path, cap_bytes: int):
        self._stop = threading.Event()
        self.deliveries = []
        for d in destinations:
            key = hashlib.sha256(d.name.encode()).hexdigest()[:12]  # a destination keeps its spool across restarts
            self.deliveries.append(Delivery(d, Spool(Path(folder) / key, cap_bytes)))

    def start(self) -> None:
        for d in self.deliveries:
            d.thread = threading.Thread(target=self._deliver, args=(d,), name=f"rtpipe-outbox-{d.destination.name}", daemon=True)
            d.thread.start()

    def publish(self, record: dict) -> dict:
        """Give ``record`` a unique ``id`` and spool it for every destination; returns it."""
        record = {"id": uuid.uuid4().hex, **record}
        line = json.dumps(record, separators=(",", ":"))
        for d in self.deliveries:
            d.spool.put(line)
        return record

    def _deliver(self, d: Delivery) -> None:
        pause = BACKOFF_S[0]
        while not self._stop.is_set():
            got = d.spool.next(timeout=0.5)
            if got is None:
                continue
            position, line = got
            try:
                d.destination.deliver(json.loads(line), line)
            except DeliveryError as exc:
                d.failed += 1
                d.last_error, d.down = str(exc), True
                self._stop.wait(pause)
                pause = min(pause * 2, BACKOFF_S[1])
                continue
            d.spool.ack(position)
            d.published += 1
            d.down = False
            pause = BACKOFF_S[0]

    def stats(self) -> list[dict]:
        return [d.stats() for d in self.deliveries]

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be within ``timeout`` s, then stop (the rest stays spooled for the next start)."""
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        while not deadline.is_set() and any(d.spool.pending and not d.down for d in self.deliveries):
            deadline.wait(0.05)
        timer.cancel()
        self._stop.set()
        for d in self.deliveries:
            if d.thread is not None:
                d.thread.join(TIMEOUT_S + 1)
            d.destination.close()
            d.spool.close()
