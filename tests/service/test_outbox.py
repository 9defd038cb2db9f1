"""The outbox: every record reaches every destination once and in order, across a destination
that is down for a while (a webhook answering 503, an MQTT broker stopped and started again);
records wait on disk meanwhile, and a restarted outbox delivers what an earlier one could not."""

from __future__ import annotations

import time

import pytest

from pipeline.config import ConfigError
from pipeline.service import outbox as outbox_module
from pipeline.service.outbox import Mqtt, Outbox, Webhook
from tests.conftest import Mosquitto, Subscriber, WebhookReceiver, needs_mosquitto


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(outbox_module, "BACKOFF_S", (0.05, 0.2))


def wait_until(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_webhook_that_is_down_gets_every_record_once_in_order_when_it_is_back(tmp_path):
    hook = WebhookReceiver()
    box = Outbox([Webhook(hook.url)], tmp_path / "spool", cap_bytes=1 << 20)
    box.start()
    try:
        sent = [box.publish({"stream": "gate", "event": "line_in", "n": i}) for i in range(5)]
        wait_until(lambda: len(hook.bodies) == 5)
        hook.failing = True
        sent += [box.publish({"stream": "gate", "event": "line_in", "n": i}) for i in range(5, 20)]
        wait_until(lambda: box.stats()[0]["failed"] >= 2)
        assert box.stats()[0]["spooled"] == 15 and not box.stats()[0]["up"]
        hook.failing = False
        wait_until(lambda: box.stats()[0]["spooled"] == 0)
        assert hook.bodies == sent  # every record once, in order, with its id
        assert len({r["id"] for r in sent}) == 20
    finally:
        box.close()
        hook.close()


def test_records_left_in_the_spool_are_delivered_by_the_next_start(tmp_path):
    hook = WebhookReceiver()
    hook.failing = True
    box = Outbox([Webhook(hook.url)], tmp_path / "spool", cap_bytes=1 << 20)
    box.start()
    sent = [box.publish({"event": "zone_enter", "n": i}) for i in range(3)]
    box.close(timeout=0.5)  # the webhook is down: they stay on disk
    hook.failing = False
    again = Outbox([Webhook(hook.url)], tmp_path / "spool", cap_bytes=1 << 20)
    assert again.stats()[0]["spooled"] == 3
    again.start()
    try:
        wait_until(lambda: len(hook.bodies) == 3)
        assert hook.bodies == sent
    finally:
        again.close()
        hook.close()


def test_a_full_spool_counts_what_it_drops(tmp_path):
    hook = WebhookReceiver()
    hook.failing = True
    box = Outbox([Webhook(hook.url)], tmp_path / "spool", cap_bytes=400)
    box.start()
    try:
        for i in range(10):
            box.publish({"event": "line_out", "n": i})
        stats = box.stats()[0]
        assert stats["dropped"] > 0 and stats["spooled"] + stats["dropped"] == 10
    finally:
        box.close(timeout=0)
        hook.close()


@needs_mosquitto
def test_mqtt_every_record_once_across_a_broker_restart(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        sub = Subscriber(broker)
        box = Outbox([Mqtt(broker.url, "rtpipe/{stream}/{event}")], tmp_path / "spool", cap_bytes=1 << 20)
        box.start()
        try:
            wait_until(sub.subscribed.is_set)
            sent = [box.publish({"stream": "gate", "event": "line_in", "n": i}) for i in range(10)]
            wait_until(lambda: len(sub.messages) == 10)
            broker.stop()
            sent += [box.publish({"stream": "gate", "event": "line_out", "n": i}) for i in range(10, 30)]
            wait_until(lambda: box.stats()[0]["failed"] >= 1)
            broker.start()
            wait_until(lambda: box.stats()[0]["spooled"] == 0 and len({m["id"] for m, _ in sub.messages}) == 30, timeout=30)
            time.sleep(0.5)  # anything sent twice would be here by now
            ids = [m["id"] for m, dup in sub.messages if not dup]  # (a broker may redeliver one in flight, flagged dup)
            assert sorted(ids) == sorted(r["id"] for r in sent) and len(ids) == 30
            assert [m["n"] for m, _ in sub.messages[:10]] == list(range(10))
        finally:
            box.close()
            sub.close()


@pytest.mark.parametrize("make, text", [
    (lambda: Mqtt("http://broker:1883"), "give mqtt://HOST"),
    (lambda: Mqtt("mqtt://broker", topic="rtpipe/{camera}"), "--mqtt-topic"),
    (lambda: Webhook("ftp://host/x"), "http:// or https://"),
])
def test_bad_destinations_are_refused_with_one_line(make, text):
    with pytest.raises(ConfigError, match=text) as err:
        make()
    assert "\n" not in str(err.value)
