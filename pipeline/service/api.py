"""The service's HTTP API (FastAPI; served by uvicorn; OpenAPI docs at ``/docs``).

    POST   /streams              add a stream (StreamSpec) -> 201 and its status
    GET    /streams              every stream's status
    GET    /streams/{id}         one (by id or name)
    PATCH  /streams/{id}         new lines / zones
    DELETE /streams/{id}         stop it, outputs finalised -> its last status
    GET    /streams/{id}/view    its annotated frames as MJPEG (drawn only while watched)
    GET    /health               the process answers
    GET    /ready                200 when the models are loaded and a stream is up (or none is configured), else 503
    GET    /metrics              Prometheus text format

Guarded as the browser view is: with a token every request must carry it (``Authorization:
Bearer TOKEN``, or ``?token=`` for a view opened in a browser), compared in constant time, but
/health, /docs and /openapi.json (a liveness probe, and the API's own description); on a
loopback address the ``Host`` header must name a loopback host (no DNS rebinding); request
bodies are capped at ``MAX_BODY`` bytes. Errors are one line: ``{"detail": "..."}``.
"""

from __future__ import annotations

import hmac

import anyio
import cv2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from pipeline.browser_view import host_name, is_loopback
from pipeline.service.exporter import CONTENT_TYPE, Exporter
from pipeline.service.service import Service, StreamNotFound
from pipeline.service.streams import ShapesPatch, StreamSpec
from pipeline.types import InputError

MAX_BODY = 64 * 1024
MAX_VIEWERS = 8  # per stream
BOUNDARY = b"frame"
OPEN_PATHS = ("/health", "/docs", "/openapi.json")  # no token: a liveness probe, and the API's own description


def one_line(exc: RequestValidationError) -> str:
    e = exc.errors()[0]
    if e["type"] == "json_invalid":
        return f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'cannot be parsed')})"
    where = ".".join(str(p) for p in e["loc"] if p != "body") or "body"
    return f"{where}: {e['msg'].removeprefix('Value error, ')}"


def make_app(service: Service, token: str | None = None, loopback: bool = True) -> FastAPI:
    app = FastAPI(title="rtpipe serve", description="rtpipe as a camera service: streams, events, metrics")
    exporter = Exporter(service)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if loopback and not is_loopback(host_name(request.headers.get("host", ""))):
            return JSONResponse({"detail": "this service answers only requests to a loopback host name"}, status_code=403)
        if token is not None and request.url.path not in OPEN_PATHS:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            given = value.strip() if scheme.lower() == "bearer" else request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "missing or wrong token: send 'Authorization: Bearer TOKEN'"}, status_code=401)
        size = request.headers.get("content-length")
        if (size is not None and (not size.isdigit() or int(size) > MAX_BODY)) or \
                (size is None and request.headers.get("transfer-encoding")):
            return JSONResponse({"detail": f"request body over {MAX_BODY} bytes (or of unknown length)"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": one_line(exc)}, status_code=422)

    @app.exception_handler(InputError)
    async def refused(request: Request, exc: InputError):  # settings, models, sources: what the caller can fix
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(StreamNotFound)
    async def missing(request: Request, exc: StreamNotFound):
        return JSONResponse({"detail": f"no stream {exc.args[0]!r}: GET /streams lists them"}, status_code=404)

    @app.post("/streams", status_code=201)
    def add(spec: StreamSpec) -> dict:
        return service.get(service.add(spec))

    @app.get("/streams")
    def streams() -> list[dict]:
        return service.list()

    @app.get("/streams/{sid}")
    def stream(sid: str) -> dict:
        return service.get(sid)

    @app.patch("/streams/{sid}")
    def patch(sid: str, change: ShapesPatch):
        try:
            return service.update(sid, change.lines, change.zones)
        except InputError:  # a bad line or zone: 422
            raise
        except ValueError as exc:  # the stream counts nothing, or is not running
            return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.delete("/streams/{sid}")
    def remove(sid: str) -> dict:
        return service.remove(sid)

    @app.get("/streams/{sid}/view")
    async def view(sid: str):
        stream = service._find(sid)
        if not stream.alive:
            return JSONResponse({"detail": f"stream '{stream.spec.name}' is {stream.state}: nothing to show"}, status_code=409)
        if stream.viewers >= MAX_VIEWERS:
            return JSONResponse({"detail": f"{MAX_VIEWERS} viewers already watch this stream"}, status_code=503)

        async def frames():
            stream.viewers += 1
            seq = 0
            try:
                while stream.alive:
                    seq, image = await anyio.to_thread.run_sync(stream.picture, seq, 1.0)
                    if image is None:
                        continue
                    ok, jpeg = await anyio.to_thread.run_sync(cv2.imencode, ".jpg", image)
                    if ok:
                        yield b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: " + \
                            str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg.tobytes() + b"\r\n"
            finally:
                stream.viewers -= 1

        return StreamingResponse(frames(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    def ready():
        streams = service.list()
        up = [s for s in streams if s["state"] == "up"]
        ok = service.started and (not streams or bool(up))
        return JSONResponse({"ready": ok, "streams": len(streams), "up": len(up)}, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics():
        return Response(exporter.render(), media_type=CONTENT_TYPE)

    return app
