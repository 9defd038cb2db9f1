"""A stream's annotated video pushed to an RTSP, RTMP or SRT server (PyAV's muxers), for viewers
and NVRs that want a video stream rather than the MJPEG view.

H.264 from x264 with the ``ultrafast`` preset and ``zerolatency`` tuning (no B-frames, no
lookahead, so a frame leaves as soon as it is drawn) and a keyframe every second (a viewer
that joins sees a picture within a second). Frames are timed by their capture (pts), so a live
stream that dropped frames plays at the speed it happened.

A server that is down or goes away does not stop the stream: the push is closed, frames are
dropped (counted) and it is reopened after a pause that doubles from 1 s to 30 s.
"""

from __future__ import annotations

import time
from fractions import Fraction
from urllib.parse import urlsplit

import numpy as np

from pipeline.sinks import Sink, flush
from pipeline.sources import redact
from pipeline.types import Detections, Frame

FORMATS = {"rtsp": "rtsp", "rtsps": "rtsp", "rtmp": "flv", "rtmps": "flv", "srt": "mpegts"}
PAUSE_S = (1.0, 30.0)
OPEN_TIMEOUT_S = 5.0


def check_url(url: str) -> str:
    """``url`` if it is one the restream can push to, else a ValueError saying which are."""
    parts = urlsplit(url)
    if parts.scheme not in FORMATS or not parts.hostname:
        raise ValueError(f"give an {', '.join(FORMATS)} URL, e.g. rtsp://127.0.0.1:8554/gate")
    return url


class Restream(Sink):
    """Pushes every drawn frame to ``url``; ``fps``: the source's nominal rate (30 when unknown)."""

    needs_image = True

    def __init__(self, url: str, fps: float | Fraction | None):
        self.url, self.format = check_url(url), FORMATS[urlsplit(url).scheme]
        self.fps = Fraction(fps or 30).limit_denominator(1001)
        self.container = self.stream = None
        self.size: tuple[int, int] | None = None
        self.sent = self.dropped = self.failures = 0
        self.last_error: str | None = None
        self._retry_at, self._pause = 0.0, PAUSE_S[0]
        self._first_pts: float | None = None
        self._last_slot = -1

    def _open(self, w: int, h: int) -> None:
        import av

        container = av.open(self.url, mode="w", format=self.format, timeout=OPEN_TIMEOUT_S)  # (RTSP: FFmpeg's default, UDP)
        try:
            stream = container.add_stream("libx264", rate=self.fps)
            stream.width, stream.height = w, h
            stream.pix_fmt = "yuv420p"
            stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
            stream.codec_context.gop_size = max(1, round(float(self.fps)))
        except Exception:
            container.close()
            raise
        self.container, self.stream = container, stream
        self._first_pts, self._last_slot = None, -1

    def write(self, frame: Frame, detections: Detections, image: np.ndarray | None) -> None:
        import av

        img = frame.image if image is None else image
        h, w = img.shape[:2]
        img = img[: h - h % 2, : w - w % 2]  # 4:2:0 needs even sizes
        if self.container is None:
            if time.monotonic() < self._retry_at:
                self.dropped += 1
                return
            try:
                self._open(img.shape[1], img.shape[0])
            except (av.FFmpegError, OSError) as exc:
                self._failed(exc)
                return
        if self._first_pts is None:
            self._first_pts = frame.pts
        slot = max(round((frame.pts - self._first_pts) * self.fps), self._last_slot + 1)
        self._last_slot = slot
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
        vf.pts, vf.time_base = slot, 1 / self.fps
        try:
            for packet in self.stream.encode(vf):
                self.container.mux(packet)
        except (av.FFmpegError, OSError) as exc:
            self._failed(exc)
            return
        self.sent += 1
        self._pause = PAUSE_S[0]

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.dropped += 1
        self.last_error = f"{redact(self.url)}: {' '.join(str(exc).split())[:200]}"
        self._close_quietly()
        self._retry_at = time.monotonic() + self._pause
        self._pause = min(self._pause * 2, PAUSE_S[1])

    def _close_quietly(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - a server already gone
                pass
        self.container = self.stream = None

    def close(self, complete: bool) -> None:
        if self.container is None:
            return
        try:
            flush(self.stream, self.container)
        except Exception:  # noqa: BLE001 - the server went away while the stream ended
            pass
        self._close_quietly()

    def stats(self) -> dict:
        return {"url": redact(self.url), "sent": self.sent, "dropped": self.dropped, "failures": self.failures,
                "up": self.container is not None, "last_error": self.last_error}
