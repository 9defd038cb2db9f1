"""The HTTP API in process (FastAPI's TestClient): status codes, one-line errors naming the
field, the token, the loopback Host check and the body cap."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from pipeline.service import Service, ServiceConfig
from pipeline.service.api import MAX_BODY, make_app

LIVE = "synthetic:320x180@15"


@pytest.fixture
def service(tmp_path):
    s = Service(ServiceConfig(outputs=tmp_path / "out", spool=tmp_path / "spool"), destinations=[])
    s.start()
    yield s
    s.stop(timeout=10)


def client(service, token=None, loopback=True) -> TestClient:
    return TestClient(make_app(service, token, loopback), base_url="http://127.0.0.1:8000")


def test_streams_are_added_listed_changed_and_removed(service):
    api = client(service)
    assert api.get("/ready").status_code == 200  # no stream configured: ready once started
    made = api.post("/streams", json={"source": LIVE, "name": "gate", "lines": ["0,0.5,1,0.5"]})
    assert made.status_code == 201 and made.json()["name"] == "gate"
    sid = made.json()["id"]
    deadline = time.monotonic() + 60
    while api.get(f"/streams/{sid}").json()["state"] != "up" or not api.get(f"/streams/{sid}").json()["frames"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert api.get("/ready").json() == {"ready": True, "streams": 1, "up": 1}
    assert [s["id"] for s in api.get("/streams").json()] == [sid]
    assert api.patch("/streams/gate", json={"lines": ["bad"]}).status_code == 422
    changed = api.patch("/streams/gate", json={"lines": ["in=0.5,0,0.5,1"]})
    assert changed.status_code == 200 and changed.json()["settings"]["lines"] == ["in=0.5,0,0.5,1"]
    metrics = api.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain") and 'rtpipe_stream_up{stream="gate"} 1.0' in metrics.text
    assert 'rtpipe_stream_latency_seconds_count{stream="gate"}' in metrics.text
    gone = api.delete(f"/streams/{sid}")
    assert gone.status_code == 200 and gone.json()["state"] == "stopped"
    assert api.get(f"/streams/{sid}").status_code == 404 and api.get("/streams").json() == []
    assert 'stream="gate"' not in api.get("/metrics").text  # a removed stream's series go with it


@pytest.mark.parametrize("body, field", [
    ({"source": LIVE, "name": "x", "conf": 2}, "conf"),
    ({"source": LIVE, "name": "x", "colour": "red"}, "colour"),
    ({"source": LIVE}, "name"),
    ({"source": LIVE, "name": "x", "zones": ["0,0,1,1"]}, "--zone"),
    ({"source": "/etc/passwd", "name": "x"}, "allow-files"),
    ({"source": LIVE, "name": "x", "model": "no-such-model"}, "no-such-model"),
    ({"source": LIVE, "name": "cäm"}, "name: use ASCII letters"),
])
def test_bad_settings_are_a_422_with_one_line_naming_the_field(service, body, field):
    answer = client(service).post("/streams", json=body)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and field in detail


def test_unknown_streams_and_streams_without_a_tracker(service):
    api = client(service)
    assert api.get("/streams/nope").status_code == 404 and "GET /streams" in api.get("/streams/nope").json()["detail"]
    api.post("/streams", json={"source": LIVE, "name": "plain"})
    deadline = time.monotonic() + 60
    while service.get("plain")["frames"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert api.patch("/streams/plain", json={"lines": ["0,0.5,1,0.5"]}).status_code == 409


def test_a_token_is_required_when_set(service):
    api = client(service, token="s3cret")
    assert api.get("/streams").status_code == 401
    assert api.get("/health").status_code == 200 and api.get("/openapi.json").status_code == 200  # probes and docs
    assert api.get("/streams", headers={"Authorization": "bearer s3cret"}).status_code == 200  # (the scheme is case-blind)
    assert api.get("/streams", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.get("/streams", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert api.get("/streams?token=s3cret").status_code == 200


def test_a_loopback_service_answers_only_loopback_host_names(service):
    api = client(service)
    assert api.get("/health", headers={"Host": "evil.example:8000"}).status_code == 403
    assert api.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
    assert client(service, token="t", loopback=False).get("/health", headers={"Host": "cam-box:8000",
                                                                               "Authorization": "Bearer t"}).status_code == 200


def test_request_bodies_are_capped(service):
    answer = client(service).post("/streams", content=b"{" + b" " * MAX_BODY + b"}", headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and not service.streams


def test_a_body_that_is_not_json_is_one_line(service):
    answer = client(service).post("/streams", content=b"{source: x", headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("the body is not valid JSON")
