"""Shared test helpers and fixtures: generated clips, the bundled tiny model, built engines, live publishers.

The fakes (slowed and failing models, recording sinks, broken sources) live in ``tests/fakes.py``."""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.bench.system import rss_mb  # noqa: F401  (the tests' name for it)
from pipeline.demo.scenes import Scene
from pipeline.loader import load_model
from pipeline.models import Model
from pipeline.sources import SyntheticScene, open_source

# The tests' own per-user folders (the record of engines rtpipe built, the engine cache), set
# before anything is built and inherited by the CLI subprocesses: never the real user's.
_HOME = Path(tempfile.mkdtemp(prefix="rtpipe-tests-"))
atexit.register(shutil.rmtree, _HOME, True)
os.environ["RTPIPE_STATE_DIR"] = str(_HOME / "state")
os.environ["RTPIPE_CACHE_DIR"] = str(_HOME / "cache")

def pytest_report_header(config):
    """The versions the parity tests ran with (they are parametrized by what is installed)."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"
    names = ("numpy", "opencv-python-headless", "av", "onnxruntime", "torch", "torchvision", "ultralytics")
    return "rtpipe deps: " + ", ".join(f"{n} {v(n)}" for n in names)



def make_clip(path: Path, frames: int = 30, size: tuple[int, int] = (320, 240), fps: Fraction | int = 25) -> Path:
    """Write an H.264 MP4 of the synthetic scene (frame index drawn on it)."""
    w, h = size
    scene = SyntheticScene(w, h, seed=3)
    with av.open(str(path), "w", format="mpegts" if path.suffix == ".ts" else "mp4") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(scene.render(i), format="bgr24")
            vf.pts = i
            vf.time_base = 1 / Fraction(fps)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def probe(path: Path) -> dict:
    """Frames actually decoded, nominal fps and size of a video file."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return {"frames": n, "fps": Fraction(s.average_rate), "size": (s.width, s.height)}


@pytest.fixture(scope="session")
def tiny_model() -> Model:
    return load_model("tiny-seg")


@pytest.fixture
def clip(tmp_path) -> Path:
    return make_clip(tmp_path / "clip.mp4")


def random_boxes(rng: np.random.Generator, n: int, size: float = 100.0) -> np.ndarray:
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 3, (n, 2))
    return np.hstack([xy, xy + wh]).astype(np.float32)


def one_node_onnx(path: Path, op: str, in_shape: list, out_shape: list, names: str | None = None,
                  initializers: dict[str, np.ndarray] | None = None) -> Path:
    """Save a one-node ONNX model ``images -> op -> output0`` (extra inputs from initializers)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()]
    node = helper.make_node(op, ["images", *(initializers or {})], ["output0"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if names is not None:
        model.metadata_props.append(onnx.StringStringEntryProto(key="names", value=names))
    onnx.save(model, str(path))
    return path


def spread_scores(model, seed: int = 1, gain: float = 1.0) -> None:
    """Re-draw a torch model's convolutions (seeded) with variance gain / fan-in.

    Random-init detection heads give near-identical scores everywhere (vanishing features, a
    fixed class prior): comparisons become a matter of ties. With fan-in-scaled weights, features
    keep their scale and scores vary with the image. Architecture and code paths are untouched.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * (gain / mod.weight[0].numel()) ** 0.5)
                if mod.bias is not None:
                    mod.bias.zero_()


def yolo_checkpoint(path: Path, imgsz: int = 160, width: int = 16, seed: int = 0, gain: float = 1.0) -> Path:
    """A seeded rtpipe YOLO-layout (rtnet) segmentation checkpoint whose scores vary with the image
    (``gain`` 3 spreads them over 0.6-1 at imgsz 320; at 1 they sit within 0.005 of 0.5 there)."""
    from pipeline.models import rtnet

    net = rtnet.build(["car", "pedestrian", "cyclist", "sign"], imgsz=imgsz, width=width, seed=seed)
    spread_scores(net, seed=seed + 1, gain=gain)
    return rtnet.save(net, path)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """spec -> (weights or None, imgsz): a YOLO-layout rtnet checkpoint and a torchvision SSDlite state_dict.

    Session-wide: the builder's tests (tests/build/), the sidecar's (tests/test_sidecar.py) and
    ``rtpipe info``'s share them."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from pipeline.models import torchvision as tvf

    tmp = tmp_path_factory.mktemp("ckpt")
    ssd = tvf.build("ssdlite320_mobilenet_v3_large", None, None)
    spread_scores(ssd, gain=1.6)  # random-init heads score every anchor alike; see tests/models/test_torchvision.py
    torch.save(ssd.state_dict(), tmp / "ssdlite.pth")
    return {"yolo": (str(yolo_checkpoint(tmp / "rtnet.pt")), None),
            "torchvision": ("torchvision:ssdlite320_mobilenet_v3_large", tmp / "ssdlite.pth")}


@pytest.fixture(scope="session")
def engines(checkpoints, tmp_path_factory):
    """family -> {format: engine path}: ONNX at batch 1, AOTI (CPU) with a dynamic batch 1..4 (built once a session)."""
    from pipeline.build import BuildOptions, build

    out = tmp_path_factory.mktemp("engines")
    built = {}
    for family, (spec, weights) in checkpoints.items():
        built[family] = {
            "onnx": build(spec, BuildOptions(format="onnx"), out, weights=weights),
            "aoti": build(spec, BuildOptions(format="aoti", batch="1:2:4"), out, weights=weights),
        }
    return built


def pick_conf(scores: np.ndarray) -> float:
    """A threshold in the widest gap between ranks 20 and 60, so no score sits on the boundary."""
    s = np.sort(scores)[::-1][:61]
    if len(s) < 21:
        return 0.0
    gaps = s[19:-1] - s[20:]
    i = 19 + int(np.argmax(gaps))
    return float((s[i] + s[i + 1]) / 2)


def assert_same_detections(ref, got, where: str = "") -> None:
    """Every reference detection has a match (IoU >= 0.95, same class, score within 1e-3), and no extras."""
    from pipeline.ops import box_iou

    assert len(ref) > 0, f"{where}: the reference has no detections to compare"
    assert len(got) == len(ref), f"{where}: {len(got)} detections, the reference has {len(ref)}"
    iou = box_iou(ref.xyxy, got.xyxy)
    for i in range(len(ref)):
        ok = (iou[i] >= 0.95) & (got.class_id == ref.class_id[i]) & (np.abs(got.confidence - ref.confidence[i]) <= 1e-3)
        assert ok.any(), f"{where}: reference detection {i} ({ref.xyxy[i]}, class {ref.class_id[i]}, {ref.confidence[i]:.4f}) unmatched"


FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="needs the ffmpeg command (.ci/run installs Debian's ffmpeg)")
needs_rtsp_server = pytest.mark.skipif(FFMPEG is None or shutil.which("rtsp-server-perl") is None,
                                       reason="needs ffmpeg and rtsp-server-perl (.ci/run installs both from Debian)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Publisher:
    """ffmpeg playing a clip in a loop, in real time, as a live stream on 127.0.0.1.

    kind: "http" or "tcp" (MPEG-TS from ``ffmpeg -listen``, one client) or "rtsp" (published into
    a local rtsp-server-perl, which ``start_server``/``kill_server`` control). ``kill()`` ends
    the publisher abruptly, ``start()`` brings it back.
    """

    def __init__(self, clip: Path, kind: str):
        self.clip, self.kind = clip, kind
        self.port, self.server_port = free_port(), free_port()
        self.url = {"http": f"http://127.0.0.1:{self.port}/live.ts", "tcp": f"tcp://127.0.0.1:{self.port}",
                    "rtsp": f"rtsp://127.0.0.1:{self.port}/live"}[kind]
        self.proc = self.server = None

    def start_server(self) -> None:
        self.server = subprocess.Popen(["rtsp-server-perl", "-c", str(self.port), "-s", str(self.server_port), "-l", "0"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.server_port)

    def start(self) -> None:
        if self.kind == "rtsp" and self.server is None:
            self.start_server()
        out = {"http": ["-f", "mpegts", "-listen", "1", self.url], "tcp": ["-f", "mpegts", f"{self.url}?listen=1"],
               "rtsp": ["-f", "rtsp", f"rtsp://127.0.0.1:{self.server_port}/live"]}[self.kind]
        self.proc = subprocess.Popen([FFMPEG, "-nostdin", "-loglevel", "quiet", "-re", "-stream_loop", "-1", "-i", str(self.clip),
                                      "-c", "copy", *out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        for p in (self.proc,):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()

    def kill_server(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.wait()
            self.server = None

    def __enter__(self) -> Publisher:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        self.kill_server()


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class SilentServer:
    """An HTTP server on 127.0.0.1 that answers every request with 200 and its headers, and then
    sends nothing, holding the connection open: a stream that opens but never speaks."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/live.ts"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n\r\n")
            self.held.append(conn)

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def open_when_up(url: str, reconnect: float, timeout: float = 15.0, **kwargs):
    """open_source(url), retried until the publisher is up (a listening ffmpeg takes a moment):
    a source that opened, not one that starts in an outage."""
    from pipeline.sources import SourceError

    deadline = time.monotonic() + timeout
    while True:
        try:
            src = open_source(url, reconnect=reconnect, **kwargs)
            if src.down_at_start is None:
                return src
        except SourceError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not come up in {timeout} s")
        time.sleep(0.2)


# ---- the GPU path: its tests run on CPU tensors here (and on CUDA where there is one)

def assert_same(got, want, mask_tolerance=0.01):
    """Same boxes (within 1e-3 px), scores, classes, order; masks differ in at most 1 % of a box's pixels."""
    assert len(got) == len(want)
    np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-3)
    np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-6)
    np.testing.assert_array_equal(got.class_id, want.class_id)
    assert (got.mask is None) == (want.mask is None)
    if want.mask is not None:
        np.testing.assert_array_equal(got.mask.regions, want.mask.regions)
        for a, b in zip(got.mask.crops, want.mask.crops):
            assert a.shape == b.shape and (a != b).sum() <= mask_tolerance * max(a.size, 1)


DEVICES = ["cpu"] + (["cuda"] if importlib.util.find_spec("torch") and __import__("torch").cuda.is_available() else [])


@pytest.fixture(scope="session")
def demo_frames() -> list[np.ndarray]:
    """Four 1280x720 demo-scene frames (cars, pedestrians, cyclists, signs)."""
    return [r.image for r in Scene(7).frames(40)][::10]


@pytest.fixture(scope="session")
def demo_torch() -> object:
    """The bundled demo model (detection + masks) on the torch backend, CPU."""
    return load_model("demo", backend="torch", conf=0.25)


# ---- the service: a real MQTT broker and a webhook receiver

MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="needs Debian's mosquitto (.ci/run installs it)")


class Mosquitto:
    """A Mosquitto broker on 127.0.0.1 (a free port), persistent in ``folder``, so that QoS 1 messages
    queued for a subscriber survive ``stop()``/``start()``, as a production broker's do."""

    def __init__(self, folder: Path):
        self.port, self.folder = free_port(), folder
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder}/\nlog_dest none\n"
                             + ("user root\n" if os.geteuid() == 0 else ""))  # (as root it would switch to a user that cannot write here)
        self.proc = None
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Subscriber:
    """An MQTT client keeping what arrives on ``topic`` (QoS 1, a persistent session, reconnecting):
    ``messages`` is [(record, dup flag)]."""

    def __init__(self, broker: Mosquitto, topic: str = "rtpipe/#"):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[dict, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{broker.port}", clean_session=False)
        self.client.reconnect_delay_set(0.2, 1)
        self.subscribed = threading.Event()  # set once the broker confirmed the subscription
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((json.loads(m.payload), bool(m.dup)))
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 keeping every POSTed JSON body in ``bodies``; while ``failing`` it
    answers 503 (and keeps nothing)."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self
        self.bodies: list[dict] = []
        self.failing = False

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.failing:
                    self.send_response(503)
                else:
                    receiver.bodies.append(json.loads(body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
