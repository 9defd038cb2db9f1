"""Where frames come from: ``open_source(uri) -> Source``.

File-like sources (video files, images, synthetic with ``live=0``) are lossless and ordered:
the runtime blocks rather than drop. Live sources (cameras, network streams, synthetic) run
at their own pace; the runtime keeps only the newest frames and counts what it drops.
"""

from __future__ import annotations

import glob as globlib
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from urllib.parse import parse_qs

import cv2
import numpy as np

from pipeline.types import Frame

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")


class SourceError(ValueError):
    """A source that cannot be opened or read; the message names it and says what to do."""


class Source(ABC):
    """A stream of frames. ``live`` sources may be dropped from; others never are."""

    uri: str
    live: bool = False
    fps: Fraction | None = None  # nominal frame rate, when known
    total: int | None = None     # number of frames, when known
    drops: int = 0               # frames the source itself skipped (e.g. a late synthetic tick)

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames until the source ends. Closing the generator releases the source."""

    def describe(self) -> dict:
        return {"uri": self.uri, "live": self.live, "fps": None if self.fps is None else float(self.fps), "total": self.total}


class PyAVSource(Source):
    """A video file or network stream, demuxed and decoded by FFmpeg through PyAV."""

    def __init__(self, uri: str, live: bool, source_id: int = 0, open_timeout: float = 10.0):
        import av

        self.uri, self.live, self.source_id = uri, live, source_id
        # TCP for RTSP: no smeared frames from lost UDP packets. (No 'fflags nobuffer': it
        # discards the packets read while probing; stale frames are dropped downstream instead.)
        options = {"rtsp_transport": "tcp"} if uri.startswith("rtsp") else {}
        try:
            self.container = av.open(uri, options=options, timeout=(open_timeout, open_timeout) if live else None)
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open '{uri}': {exc}") from exc
        if not self.container.streams.video:
            self.container.close()
            raise SourceError(f"'{uri}' has no video stream: give a video file, a stream URL or an image")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"  # frame + slice threads in the decoder
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = Fraction(rate) if rate else None
        self.total = (self.stream.frames or None) if not live else None

    def frames(self) -> Iterator[Frame]:
        import av

        tb = self.stream.time_base
        try:
            for i, vf in enumerate(self.container.decode(self.stream)):
                now = time.monotonic()
                if vf.pts is not None and tb is not None:
                    pts = float(vf.pts * tb)
                else:
                    pts = i / float(self.fps) if self.fps else 0.0
                yield Frame(vf.to_ndarray(format="bgr24"), i, pts, now, self.source_id)
        except av.error.FFmpegError as exc:
            raise SourceError(f"reading '{self.uri}' failed: {exc}") from exc
        finally:
            self.container.close()


class CameraSource(Source):
    """A local camera through OpenCV: an index (``0``) or a device path (``/dev/video0``)."""

    live = True

    def __init__(self, uri: str, source_id: int = 0):
        self.uri, self.source_id = uri, source_id
        target = int(uri) if uri.isdigit() else uri
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            self.cap.release()
            raise SourceError(f"cannot open camera '{uri}': check that it exists and is not in use (ls /dev/video*)")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else None

    def frames(self) -> Iterator[Frame]:
        start, i = time.monotonic(), 0
        try:
            while True:
                ok, img = self.cap.read()
                now = time.monotonic()
                if not ok:
                    return
                yield Frame(img, i, now - start, now, self.source_id)
                i += 1
        finally:
            self.cap.release()


class ImageSource(Source):
    """One image file, a folder of images, or a glob pattern; sorted by path."""

    def __init__(self, uri: str, paths: list[Path], source_id: int = 0):
        if not paths:
            raise SourceError(f"no images found for '{uri}' (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        self.uri, self.paths, self.source_id = uri, paths, source_id
        self.total = len(paths)

    def frames(self) -> Iterator[Frame]:
        for i, p in enumerate(self.paths):
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise SourceError(f"cannot read image '{p}': not an image or unreadable")
            yield Frame(img, i, float(i), time.monotonic(), self.source_id)


class SyntheticSource(Source):
    """Generated frames: moving shapes over a road-like scene.

    ``synthetic:WxH@FPS`` is live: paced by the wall clock at FPS and endless (frames=N ends
    it). With ``?live=0`` it is file-like: as fast as the consumer takes them, never dropped,
    ``frames`` long (300 by default). ``seed`` changes the scene.
    """

    SYNTAX = "synthetic:WIDTHxHEIGHT@FPS[?frames=N&live=0|1&seed=S]"

    def __init__(self, uri: str, source_id: int = 0):
        m = re.fullmatch(r"synthetic:(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?(?:\?(.*))?", uri)
        if not m:
            raise SourceError(f"bad synthetic source '{uri}': use {self.SYNTAX}")
        self.uri, self.source_id = uri, source_id
        self.width, self.height = int(m.group(1)), int(m.group(2))
        self.fps = Fraction(m.group(3) or "30").limit_denominator(1001)
        query = {k: v[-1] for k, v in parse_qs(m.group(4) or "", strict_parsing=False).items()}
        unknown = set(query) - {"frames", "live", "seed"}
        if unknown or self.width < 16 or self.height < 16 or self.fps <= 0:
            raise SourceError(f"bad synthetic source '{uri}': use {self.SYNTAX} (size >= 16x16, fps > 0)")
        try:
            self.live = query.get("live", "1") not in ("0", "false", "no")
            frames = query.get("frames")
            self.total = int(frames) if frames is not None else (None if self.live else 300)
            self.seed = int(query.get("seed", "0"))
        except ValueError as exc:
            raise SourceError(f"bad synthetic source '{uri}': frames and seed must be integers") from exc
        self.scene = SyntheticScene(self.width, self.height, self.seed)

    def frames(self) -> Iterator[Frame]:
        period = 1 / float(self.fps)
        start = time.monotonic()
        i = 0
        while self.total is None or i < self.total:
            if self.live:
                due = start + i * period
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -period:  # the consumer held us up: skip the ticks we missed
                    missed = int(-delay / period)
                    self.drops += missed
                    i += missed
                    continue
            now = time.monotonic()
            yield Frame(self.scene.render(i), i, i * period, now, self.source_id)
            i += 1


class SyntheticScene:
    """Deterministic scene: sky, road, and a few coloured shapes moving across it."""

    def __init__(self, width: int, height: int, seed: int = 0, objects: int = 6):
        self.w, self.h = width, height
        rng = np.random.default_rng(seed)
        y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        sky = np.array([200, 160, 110], np.float32) * (1 - y) + np.array([90, 90, 90], np.float32) * y
        bg = np.broadcast_to(sky, (height, width, 3)).copy()
        horizon = height * 2 // 5
        bg[horizon:] = 80 + rng.normal(0, 6, (height - horizon, width, 1)).astype(np.float32)
        self.background = bg.clip(0, 255).astype(np.uint8)
        cv2.line(self.background, (width // 2, horizon), (width // 2, height), (220, 220, 220), max(2, width // 200))
        s = min(width, height)
        self.objects = [
            dict(kind=int(rng.integers(0, 3)), color=tuple(int(c) for c in rng.integers(30, 255, 3)),
                 size=float(rng.uniform(0.06, 0.2) * s), x=float(rng.uniform(0, width)),
                 y=float(rng.uniform(horizon, height)), vx=float(rng.uniform(-0.01, 0.01) * width),
                 vy=float(rng.uniform(-0.002, 0.002) * height))
            for _ in range(objects)
        ]

    def render(self, index: int) -> np.ndarray:
        img = self.background.copy()
        for o in self.objects:
            x = int((o["x"] + o["vx"] * index) % (self.w + 2 * o["size"]) - o["size"])
            y = int(o["y"] + o["vy"] * index)
            r = int(o["size"] / 2)
            if o["kind"] == 0:
                cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r // 2), o["color"], -1)
            elif o["kind"] == 1:
                cv2.circle(img, (x, y), r // 2, o["color"], -1)
            else:
                pts = np.array([[x, y - r], [x - r, y + r // 2], [x + r, y + r // 2]], np.int32)
                cv2.fillPoly(img, [pts], o["color"])
        cv2.putText(img, f"{index:06d}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        return img


def open_source(uri: str, source_id: int = 0) -> Source:
    """Open any supported source by its URI; raises SourceError with a fix when it cannot.

    - ``0``, ``1``, ``/dev/video0``: a camera (OpenCV)
    - ``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``srt://``: a network stream (PyAV)
    - ``clip.mp4`` (mp4/mkv/avi/mov/webm ...): a video file (PyAV, threaded decoding)
    - ``img.jpg``, ``folder/``, ``"frames/*.png"``: images
    - ``synthetic:1280x720@30``: generated frames (see :class:`SyntheticSource`)
    """
    uri = str(uri)
    if uri.startswith("synthetic:"):
        return SyntheticSource(uri, source_id)
    if uri.isdigit() or uri.startswith("/dev/video"):
        return CameraSource(uri, source_id)
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in NETWORK_SCHEMES:
        return PyAVSource(uri, live=True, source_id=source_id)
    if scheme:
        raise SourceError(f"unsupported source scheme '{scheme}://': use one of {', '.join(NETWORK_SCHEMES)}")
    if any(ch in uri for ch in "*?["):
        paths = sorted(Path(p) for p in globlib.glob(uri) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        return ImageSource(uri, paths, source_id)
    path = Path(uri).expanduser()
    if path.is_dir():
        return ImageSource(uri, sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), source_id)
    if not path.exists():
        raise SourceError(f"source '{uri}' not found: give a video file, image, folder, glob, camera index, stream URL or synthetic:WxH@FPS")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(uri, [path], source_id)
    if path.stat().st_size == 0:
        raise SourceError(f"source '{uri}' is an empty file")
    return PyAVSource(str(path), live=False, source_id=source_id)
