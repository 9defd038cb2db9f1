"""Where frames come from: ``open_source(uri) -> Source``.

File-like sources (video files, images, synthetic with ``live=0``) are lossless and ordered:
the runtime blocks rather than drop. Live sources (cameras, network streams, synthetic) run
at their own pace; the runtime keeps only the newest frames and counts what it drops.
"""

from __future__ import annotations

import contextlib
import glob as globlib
import os
import queue
import re
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from urllib.parse import parse_qs, unquote

# Frames larger than MAX_FRAME_PIXELS are refused before they are decoded (a crafted file can
# declare 65535x65535 frames: 13 GB each, and several queue up). OpenCV's own image-reading
# limit is set to the same, unless the user set it (it is read once, at the first image read).
MAX_FRAME_PIXELS = 8192 * 8192  # 201 MB as BGR; 8K UHD (7680x4320) is 33 million pixels
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_FRAME_PIXELS))

import cv2  # noqa: E402  (after the limit above)
import numpy as np  # noqa: E402

from pipeline.types import Frame, InputError  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")


class SourceError(InputError):
    """A source that cannot be opened or read; the message names it and says what to do."""


SECRET_NAMES = re.compile(r"pass|pwd|token|key|secret|auth|sig|cred|user|login", re.I)


_SHOWN: dict[str, str] = {}  # URLs opened with credentials -> as shown (for tracebacks: see ``redact_known``)


def redact_known(text: str) -> str:
    """``text`` (a traceback, say) with every URL a source was opened with replaced by its shown form."""
    for raw, shown in _SHOWN.items():
        text = text.replace(raw, shown)
    return text


def redact(uri: str) -> str:
    """``uri`` as it may be shown (metrics, reports, progress, errors): a URL's ``user:password@``
    becomes ``***@`` and values whose names look like credentials (``?password=``, ``;token=``,
    ``#key=``, percent-encoded or not) become ``***``. It errs on hiding: everything before the
    last ``@`` ahead of the query is taken for credentials, even a (wrongly unencoded) ``/`` in
    a password."""
    if "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    head = re.split(r"[?#]", rest, maxsplit=1)[0]
    if "@" in head:
        rest = "***@" + rest[head.rindex("@") + 1:]
    return scheme + "://" + re.sub(
        r"([?&;#])([^=&;#?]*)=([^&;#]*)",
        lambda m: f"{m.group(1)}{m.group(2)}=" + ("***" if SECRET_NAMES.search(unquote(m.group(2))) else m.group(3)), rest)


RECONNECT_S = 30.0            # default: how long a dropped live source is retried before the run ends
STALL_S = 5.0                 # default: how long a live stream may send nothing (or take to open) before it counts as down
BACKOFF_S = (0.25, 8.0)      # first and longest wait between reconnection attempts (doubling)


class Source(ABC):
    """A stream of frames. ``live`` sources may be dropped from; others never are."""

    uri: str  # as it may be shown: credentials redacted (see ``redact``)
    live: bool = False
    fps: Fraction | None = None  # nominal frame rate, when known
    total: int | None = None     # number of frames, when known
    drops: int = 0               # frames the source itself skipped (e.g. a late synthetic tick)
    timed: bool = True           # pts are times (an image folder's only count the pictures)

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames until the source ends. Closing the generator releases the source."""

    def interrupt(self) -> None:
        """Stop waiting (e.g. between reconnection attempts): the stream ends at the next chance."""
        self._interrupted().set()

    def _interrupted(self) -> threading.Event:
        if "_stop" not in self.__dict__:
            self._stop = threading.Event()
        return self._stop

    def describe(self) -> dict:
        return {"uri": self.uri, "live": self.live, "fps": None if self.fps is None else float(self.fps), "total": self.total}


class LiveClock:
    """The pts of a live stream: its own clock while that keeps within ``tolerance`` seconds
    of the wall clock, the wall clock where it does not, and its own clock for frames that
    arrive late in a burst.

    A stream's clock cannot be trusted across what a live source lives through: a reopened
    stream (or a restarted publisher on the same connection) starts from any value; a frame
    held in the decoder comes out late at a read timeout; no clock at all (``None``, cameras).
    So each frame's pts is the previous one plus the stream's own step, unless that lands more
    than ``tolerance`` from the wall clock (or goes backwards, or the stream is new): then it is
    the wall time since the first frame, kept just after the previous pts.

    One exception: frames that come late in a burst (a stalled stream, or a paused publisher,
    letting out its backlog) keep their own step while they catch up with the wall clock, so
    they fill the time in which they were captured instead of piling up at the moment they
    arrived. A late frame that does not catch up (the stream's clock lost the time for good)
    goes back to the wall clock. pts always go forward; the video of a live source lasts as long
    as the time it covers, and time in which no frame was captured shows once, as one gap.
    """

    def __init__(self, tolerance: float):
        self.tolerance = tolerance
        self.origin: tuple[float, float] | None = None  # (wall time, pts) of the first frame
        self.last: tuple[float | None, float, float] | None = None  # the last frame: (the stream's own pts, ours, its lateness)

    def place(self, raw: float | None, now: float, fresh: bool = False) -> float:
        """The pts of a frame that arrived at ``now`` with the stream's own pts ``raw``;
        ``fresh``: the first frame of a (re)opened stream, whose clock says nothing of the gap."""
        if self.origin is None:
            pts = 0.0 if raw is None else raw
            self.origin, self.last = (now, pts), (raw, pts, 0.0)
            return pts
        (last_raw, last_pts, last_late), wall = self.last, self.origin[1] + now - self.origin[0]
        own = None if fresh or raw is None or last_raw is None or raw <= last_raw else last_pts + raw - last_raw
        late = 0.0 if own is None else wall - own
        catching_up = own is not None and late > self.tolerance and (last_late <= self.tolerance or late < last_late - (raw - last_raw) / 2)
        if own is not None and (abs(late) <= self.tolerance or catching_up):
            pts = own
        else:
            pts, late = max(wall, last_pts + 1e-3), 0.0
        self.last = (raw, pts, late)
        return pts


def _detached(exc: BaseException) -> BaseException:
    """``exc`` and its causes without their tracebacks: a dropped stream's error is kept (for its
    message) after the read that raised it is gone, and a traceback would keep that read's frames,
    its container and FFmpeg's decoder threads alive until the cyclic GC ran."""
    e: BaseException | None = exc
    while e is not None:
        e.__traceback__ = None
        e = e.__cause__ or e.__context__
    return exc


class _Abandoned(Exception):
    """A call given up on (a stop, or the outage's deadline) while it still runs in its thread."""


def _call_in_thread(fn: Callable[[], object], cleanup: Callable[[object], None], stop: threading.Event,
                    deadline: float | None, name: str) -> object:
    """``fn()`` in a thread of its own, waited for until it returns (its result, or what it
    raised), ``stop`` is set or ``deadline`` (monotonic) passes (``_Abandoned``; what ``fn``
    returns later is handed to ``cleanup``). FFmpeg's blocking calls cannot be cancelled from
    outside: this way they cannot hold up a stop either."""
    lock, done, box = threading.Lock(), threading.Event(), {}

    def work():
        try:
            result = (True, fn())
        except SourceError as exc:
            result = (False, _detached(exc))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result = (False, exc)
        with lock:
            if box.get("abandoned"):
                if result[0]:
                    cleanup(result[1])
                return
            box["result"] = result
        done.set()

    threading.Thread(target=work, name=name, daemon=True).start()
    while not done.wait(0.05):
        if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
            with lock:
                if "result" not in box:
                    box["abandoned"] = True
                    raise _Abandoned
    ok, value = box["result"]
    if not ok:
        raise value
    return value


class Reconnecting(Source):
    """A live source that reopens itself when it drops: bounded exponential backoff, for at
    most ``reconnect`` seconds per outage (0: never; the stream's end is the run's end).

    Subclasses give ``_open()`` (raise SourceError when it fails) and ``_read(handle)``
    (yield (image, pts or None) until the stream ends or raises; a read that times out raises;
    ``held_back`` True while the frames yielded are ones a stalled read let out late).
    ``_handle``: the open handle, or None when the first open failed: the stream then starts
    in an outage, retried like a dropped one (a camera down at start does not stop the others).

    A live source opens and reads in threads of its own (``_opened``, ``_pump``), waited for
    here: a stop (``interrupt()``, or the ``stop`` event given) ends a stream that is opening or
    waiting for its first bytes at once, however long FFmpeg would wait, and so does the end
    of an outage's time.

    An outage lasts from the last frame that arrived on time (not ``held_back``: a demuxer
    lets out what it holds when a read times out, a second before the error) to the first one
    after it, whatever happens in between (reads that wait, reopens that fail, reopens that
    succeed but bring nothing). ``reconnect`` seconds after that last frame the source ends
    with a SourceError, whatever the read timeout: a stream that stays silent is given up on
    time. Each outage is one line on stderr when it starts and when it ends, and one entry in
    ``gaps`` (reported in the run's metrics under ``source``): after which frame, why, how many
    opens were tried, its seconds, and ``ended`` False for one still open when the run stopped.
    Frame indices keep counting; pts follow ``LiveClock``.
    """

    reconnect: float = 0.0
    finite = False  # True: a clean end of stream is the end (e.g. a file served over HTTP), not a drop
    _handle = None
    held_back = False
    down_at_start: str | None = None  # why the first open failed, when it did (the stream then starts in an outage)

    def __init__(self, stop: threading.Event | None = None):
        self.gaps: list[dict] = []
        self._outage: dict | None = None  # the outage going on: after which frame, why, opens tried
        self._on_time_at = time.monotonic()  # when the last frame that was on time arrived
        if stop is not None:
            self._stop = stop

    def _open(self):
        raise NotImplementedError

    def _read(self, handle) -> Iterator[tuple[np.ndarray, float | None]]:
        raise NotImplementedError

    def _close(self, handle) -> None:
        raise NotImplementedError

    def _deadline(self) -> float | None:
        """When the stream is given up if no frame comes (None: never, while the reads wait)."""
        return self._on_time_at + self.reconnect if self.live and self.reconnect > 0 else None

    def _opened(self, deadline: float | None = None):
        """``_open()``, left at once when the source is stopped (or ``deadline`` passes): then
        ``_Abandoned`` (the open ends in its thread by itself, its handle closed)."""
        if not self.live:
            return self._open()
        return _call_in_thread(self._open, self._close, self._interrupted(), deadline, f"rtpipe-open-{self.source_id}")

    def _given_up(self) -> SourceError:
        outage = self._outage
        what = "was down from the start" if outage["after_frame"] == 0 and self.down_at_start else "dropped"
        return SourceError(f"'{self.uri}' {what} ({outage['reason']}) and did not come back in {self.reconnect:g} s "
                           f"({outage['attempts']} attempts): check the source, or raise --reconnect")

    def _reopen(self):
        """A new handle; None when interrupted; SourceError once the outage (since the last
        frame on time) has lasted ``reconnect`` seconds."""
        stop, wait, outage = self._interrupted(), BACKOFF_S[0], self._outage
        while not stop.is_set():
            deadline = self._deadline()
            if time.monotonic() >= deadline:
                raise self._given_up()
            outage["attempts"] += 1
            try:
                return self._opened(deadline)
            except _Abandoned:
                continue  # stopped, or out of time: the loop says which
            except SourceError:
                stop.wait(max(min(wait, deadline - time.monotonic()), 0.0))
                wait = min(wait * 2, BACKOFF_S[1])
        return None

    def _pump(self, handle, out: queue.Queue, quit: threading.Event) -> None:
        """Read ``handle`` into ``out`` as (image, pts, arrival time, held back), then one
        exception or None for the end; close it. Stops when ``quit`` is set."""
        def put(item) -> None:
            while not quit.is_set():
                with contextlib.suppress(queue.Full):
                    out.put(item, timeout=0.1)
                    return

        end = None
        try:
            for img, pts in self._read(handle):
                put((img, pts, time.monotonic(), self.held_back))
                if quit.is_set():
                    return
        except SourceError as exc:  # (the stream dropped: its frames, holding the container, let go)
            end = _detached(exc)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            end = exc
        finally:
            self._close(handle)
        try:
            put(end)
        finally:
            del end  # (an exception's traceback holds this frame: no cycle left for the GC to find)

    def _frames_of(self, handle) -> Iterator[tuple[np.ndarray, float | None, float, bool]]:
        """The frames of one open handle as (image, pts, arrival, held back); raises what the
        read raised; returns at its end or when the source is stopped. A live handle is read by
        ``_pump`` in a thread of its own, so that a stop, or the outage's deadline, ends the wait
        for a frame at once (the deadline with a SourceError)."""
        if not self.live:
            try:
                for img, pts in self._read(handle):
                    yield img, pts, time.monotonic(), False
            finally:
                self._close(handle)
            return
        stop, out, quit = self._interrupted(), queue.Queue(maxsize=2), threading.Event()
        threading.Thread(target=self._pump, args=(handle, out, quit), name=f"rtpipe-read-{self.source_id}", daemon=True).start()
        try:
            while not stop.is_set():
                try:
                    item = out.get(timeout=0.05)
                except queue.Empty:
                    deadline = self._deadline()
                    if deadline is not None and time.monotonic() >= deadline:
                        raise _OutOfTime(f"nothing received for {self.reconnect:g} s") from None
                    continue
                if item is None:
                    return
                if isinstance(item, BaseException):
                    try:
                        raise item
                    finally:
                        del item
                yield item
        finally:
            quit.set()  # the pump ends (and closes the handle) when its read returns

    @property
    def outage(self) -> dict | None:
        """The outage going on (after which frame, why, opens tried), or None while frames come."""
        return self._outage

    def _gap(self, ended: bool) -> dict:
        return {**self._outage, "seconds": round(time.monotonic() - self._on_time_at, 3), **({} if ended else {"ended": False})}

    def _down(self, reason: str) -> None:
        self._outage = {"after_frame": self._index, "reason": reason, "attempts": 0}
        warnings.warn(f"'{self.uri}' is down after frame {self._index} ({reason}): reopening for up "
                      f"to {self.reconnect:g} s", stacklevel=3)

    def _back(self) -> None:
        gap = self._gap(ended=True)
        self.gaps.append(gap)
        self._outage = None
        warnings.warn(f"'{self.uri}' is back after {gap['seconds']:.1f} s without frames (from frame {gap['after_frame']}, "
                      f"{gap['attempts']} attempt(s))", stacklevel=3)

    def frames(self) -> Iterator[Frame]:
        handle, self._index, stop = self._handle, 0, self._interrupted()
        start = time.monotonic()
        if handle is not None:  # (down at start: its outage began when it was first opened)
            self._on_time_at = start
        clock = LiveClock(tolerance=2 / float(self.fps) if self.fps else 0.1)
        try:
            if handle is None:  # down at start
                if stop.is_set():
                    return
                self._down(self.down_at_start or "it could not be opened")
                handle = self._reopen()
            while handle is not None:
                fresh, reader = True, self._frames_of(handle)
                try:
                    for img, pts, now, held_back in reader:
                        if self._outage is not None:
                            self._back()
                        if self.live:
                            pts = clock.place(pts, now, fresh)
                            if not held_back:
                                self._on_time_at = now
                        elif pts is None:
                            pts = now - start
                        fresh = False
                        yield Frame(img, self._index, pts, now, self.source_id)
                        self._index += 1
                    reason = None
                except _OutOfTime as exc:  # silent until the outage's time ran out (before a read timed out)
                    if self._outage is None:
                        self._down(str(exc))
                    raise self._given_up() from None
                except SourceError as exc:
                    reason = str(exc)
                finally:
                    reader.close()  # (closes the handle, or lets the pump close it)
                handle = None
                if stop.is_set():
                    return
                if not self.live or self.reconnect <= 0 or (reason is None and self.finite):
                    if reason is not None:
                        raise SourceError(reason)
                    return
                if self._outage is None:
                    self._down(reason or "the stream ended")
                handle = self._reopen()
        finally:
            if self._outage is not None:  # the run stopped (or gave up) during an outage: it is in the metrics too
                self.gaps.append(self._gap(ended=False))
                self._outage = None

    def describe(self) -> dict:
        gaps = self.gaps + ([self._gap(ended=False)] if self._outage is not None else [])  # one the reader is still in
        return {**super().describe(), "reconnect_s": self.reconnect, "gaps": gaps,
                "gap_s": round(sum(g["seconds"] for g in gaps), 3)}


class _OutOfTime(SourceError):
    """No frame in the outage's whole time (``reconnect`` seconds since the last one on time)."""


def too_large(uri: str, width: int, height: int) -> str:
    return (f"'{uri}' has {width}x{height} frames: larger than rtpipe takes ({MAX_FRAME_PIXELS // 10**6} million pixels, "
            "e.g. 8192x8192); scale it down first (ffmpeg -vf scale=...)")


def _permanent(exc: SourceError) -> bool:
    """Whether a failed open will fail again however long it is retried: refused credentials,
    a bad request or protocol, a stream with no video (as opposed to a server that is down)."""
    import av

    permanent = (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError, av.error.HTTPBadRequestError,
                 av.error.ProtocolNotFoundError)
    return exc.__cause__ is None or isinstance(exc.__cause__, permanent)


class PyAVSource(Reconnecting):
    """A video file or network stream, demuxed and decoded by FFmpeg through PyAV.

    Files: packets that do not decode are skipped and counted (``corrupt_packets``); the rest
    is read. Network streams (live) reconnect as ``Reconnecting`` says. hwaccel: an FFmpeg
    hardware device type (``"cuda"``) to decode on; where it cannot be used the source says so
    in one warning line and decodes on the CPU (``describe()["hwaccel"]`` tells which).
    """

    def __init__(self, uri: str, live: bool, source_id: int = 0, open_timeout: float = 10.0, reconnect: float = RECONNECT_S,
                 hwaccel: str | None = None, stop: threading.Event | None = None):
        super().__init__(stop)
        self.uri, self.live, self.source_id = redact(uri), live, source_id  # uri: what is shown (no credentials)
        self._location = uri  # what is opened
        if self.uri != uri:
            _SHOWN[uri] = self.uri
        self.hwaccel = hwaccel
        self.open_timeout, self.reconnect = open_timeout, reconnect if live else 0.0
        self.corrupt_packets = 0
        self.missing_frames = 0  # frames the container declares but the file did not give (truncated, damaged)
        try:  # (a stream that answers and then sends nothing waits out the open timeout, at most --reconnect)
            self._handle = self._opened(self._deadline())
        except _Abandoned:  # stopped while opening (the run ends before it begins), or out of time
            stopped = self._interrupted().is_set()
            self.down_at_start = "stopped while it was being opened" if stopped else f"nothing received for {self.reconnect:g} s"
            return
        except SourceError as exc:
            if not (live and self.reconnect > 0) or _permanent(exc):
                raise
            self.down_at_start = str(exc)  # down at start: retried as a dropped stream is, once the run starts
            return
        stream = self._handle.streams.video[0]
        self.total = (stream.frames or None) if not live else None
        self.finite = self._handle.duration is not None  # live streams have no duration; served files do

    def _open(self):
        import av

        # RTSP over TCP first: no smeared frames from lost UDP packets; FFmpeg's default (UDP,
        # then TCP) when the server refuses it. (No 'fflags nobuffer': it discards the packets
        # read while probing; stale frames are dropped downstream instead.)
        tries = [{"rtsp_transport": "tcp"}, {}] if self._location.startswith("rtsp") else [{}]
        timeout = (self.open_timeout, self.open_timeout) if self.live else None
        for k, options in enumerate(tries):
            try:
                container = self._open_hw(options, timeout) if self.hwaccel else av.open(self._location, options=options, timeout=timeout)
                break
            except (av.error.FFmpegError, OSError) as exc:
                refused = isinstance(exc, av.error.HTTPBadRequestError) or "400" in str(exc) or "461" in str(exc)
                if not (refused and k + 1 < len(tries)):
                    if self.live or not isinstance(exc, av.error.InvalidDataError):
                        raise SourceError(f"cannot open '{self.uri}': {self._reason(exc)}") from exc
                    raise SourceError(f"cannot open '{self.uri}': not a video file FFmpeg can read ({self._reason(exc).lower()}): "
                                      "it is damaged, truncated (an MP4 cut short loses its index) or not a video; check it with "
                                      "ffprobe, or give another file") from exc
        if not container.streams.video:
            container.close()
            raise SourceError(f"'{self.uri}' has no video stream: give a video file, a stream URL or an image")
        if self.fps is None:  # (also a stream that was down at start, opened at last)
            rate = container.streams.video[0].average_rate or container.streams.video[0].guessed_rate
            self.fps = Fraction(rate) if rate else None
        ctx = container.streams.video[0].codec_context
        if (ctx.width or 0) * (ctx.height or 0) > MAX_FRAME_PIXELS:
            container.close()
            raise SourceError(too_large(self.uri, ctx.width, ctx.height))
        container.streams.video[0].thread_type = "AUTO"  # frame + slice threads in the decoder
        return container

    def _open_hw(self, options: dict, timeout):
        """Open with hardware decoding, or (saying why, once) without it."""
        import av
        from av.codec.hwaccel import HWAccel

        try:
            container = av.open(self._location, options=options, timeout=timeout, hwaccel=HWAccel(self.hwaccel, allow_software_fallback=True))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            reason = f"{exc.__class__.__name__}: {self._shown(exc)}"
        else:
            if not container.streams.video or getattr(container.streams.video[0].codec_context, "is_hwaccel", False):
                return container
            reason = f"FFmpeg has no {self.hwaccel} decoder for {container.streams.video[0].codec_context.name}"
            container.close()
        warnings.warn(f"'{self.uri}': hardware decoding ({self.hwaccel}) not available ({reason}); decoding on the CPU",
                      RuntimeWarning, stacklevel=2)
        self.hwaccel = None
        return av.open(self._location, options=options, timeout=timeout)

    def _read(self, container) -> Iterator[tuple[np.ndarray, float | None]]:
        import av

        stream = container.streams.video[0]
        tb, i, packets, slow_at = stream.time_base, 0, container.demux(stream), -float("inf")
        try:
            while True:
                asked = time.monotonic()
                packet = next(packets, None)
                if packet is None:
                    break
                # A read that waits (nearly) the whole timeout makes the demuxer let out what it
                # holds, then the next read fails: what comes in the timeout after it is late.
                now = time.monotonic()
                if now - asked >= 0.9 * self.open_timeout:
                    slow_at = now
                self.held_back = self.live and now - slow_at < 1.1 * self.open_timeout
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:
                    self.corrupt_packets += 1  # a damaged packet: skip it, keep the rest
                    continue
                for vf in decoded:
                    if vf.width * vf.height > MAX_FRAME_PIXELS:  # a stream can change size midway
                        raise SourceError(too_large(self.uri, vf.width, vf.height))
                    if vf.pts is not None and tb is not None:
                        pts = float(vf.pts * tb)
                    else:
                        pts = i / float(self.fps) if self.fps else 0.0
                    i += 1
                    yield vf.to_ndarray(format="bgr24"), pts
        except av.error.ExitError as exc:  # the read timeout
            raise SourceError(f"nothing received for {self.open_timeout:g} s") from exc
        except av.error.FFmpegError as exc:
            raise SourceError(f"reading '{self.uri}' failed: {self._reason(exc)}") from exc
        finally:
            self.held_back = False
        if i == 0 and not self.live:
            raise SourceError(f"no frame of '{self.uri}' could be decoded ({self.corrupt_packets} damaged packets): "
                              "the file is damaged or not a video")
        if self.total and i < self.total:  # e.g. an MP4 with its index at the front, cut short
            self.missing_frames = self.total - i

    def _close(self, container) -> None:
        container.close()

    def _shown(self, exc: Exception) -> str:
        """An FFmpeg error's text, which quotes the URL, without its credentials."""
        return str(exc).replace(self._location, self.uri)

    def _reason(self, exc: Exception) -> str:
        """What FFmpeg says went wrong, for a message that names the source itself: its text
        without the errno and the URL that ``str(exc)`` adds."""
        return (getattr(exc, "strerror", None) or self._shown(exc)).replace(self._location, self.uri)

    def describe(self) -> dict:
        return {**super().describe(), "corrupt_packets": self.corrupt_packets, "missing_frames": self.missing_frames,
                "hwaccel": self.hwaccel}


class CameraSource(Reconnecting):
    """A local camera through OpenCV: an index (``0``) or a device path (``/dev/video0``).
    A camera that stops giving frames is reopened as ``Reconnecting`` says."""

    live = True

    def __init__(self, uri: str, source_id: int = 0, reconnect: float = RECONNECT_S, stop: threading.Event | None = None):
        super().__init__(stop)
        self.uri, self.source_id, self.reconnect = uri, source_id, reconnect
        self._handle = self._open()
        fps = self._handle.get(cv2.CAP_PROP_FPS)
        self.fps = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else None

    def _open(self):
        cap = cv2.VideoCapture(int(self.uri) if self.uri.isdigit() else self.uri)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open camera '{self.uri}': check that it exists and is not in use (ls /dev/video*)")
        return cap

    def _read(self, cap) -> Iterator[tuple[np.ndarray, float | None]]:
        while True:
            ok, img = cap.read()
            if not ok:
                return
            yield img, None

    def _close(self, cap) -> None:
        cap.release()


# libjpeg and libpng write what they find wrong with a damaged image straight to the process's
# stderr (file descriptor 2), past OpenCV's log level. ``decode_image`` catches what is written
# there while an image decodes: a decoder's line marks the image damaged (a JPEG cut short or with
# bytes overwritten decodes, its missing part grey). With HIDE_DECODER_MESSAGES (the CLI sets it,
# unless --debug: rtpipe itself names the images) those lines are dropped; whatever else reaches
# stderr meanwhile (another thread's progress or warnings) is passed on after it.
HIDE_DECODER_MESSAGES = False
_DECODER_MESSAGE = re.compile(rb"(?m)^(?:libpng (?:warning|error): |Corrupt JPEG data|Premature end of JPEG file|"
                              rb"Invalid SOS parameters|Inconsistent progression sequence|Warning: unknown JFIF|"
                              rb"Unknown Adobe color transform|Application transferred too many scanlines).*\n?")
_STDERR_LOCK = threading.Lock()  # one redirection of fd 2 at a time


def decode_image(path: str | Path) -> tuple[np.ndarray | None, bool]:
    """``cv2.imread`` as BGR (None: not an image it can read), and whether its decoder reported
    the image damaged. Raises cv2.error over OpenCV's image size limit."""
    import tempfile

    with _STDERR_LOCK, tempfile.TemporaryFile() as caught:
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read()
            rest = _DECODER_MESSAGE.sub(b"", text)
            with contextlib.suppress(OSError):  # stderr closed or a closed pipe: nothing to pass on
                shown = rest if HIDE_DECODER_MESSAGES else text
                while shown:
                    shown = shown[os.write(2, shown):]
    return img, any(not m.startswith(b"Warning: unknown JFIF") for m in _DECODER_MESSAGE.findall(text))  # (that one is harmless)


def read_image(path: str | Path) -> np.ndarray | None:
    """The image at ``path`` as BGR, damaged or not (see ``decode_image``); None when it cannot be read."""
    return decode_image(path)[0]


def not_a_file(path: Path) -> str | None:
    """What ``path`` is when it exists but is not a regular file or folder (a FIFO, a socket, a device), else None."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    kinds = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"))
    return next((what for test, what in kinds if test(mode)), None)


class ImageSource(Source):
    """One image file, a folder of images, or a glob pattern; sorted by path.

    A frame's index is the image's place in that order, so an unreadable image of a folder
    leaves a gap in the indices: it is skipped, counted (``unreadable``, the first names in
    ``describe()``) and the rest go on; a single image that cannot be read, or a folder of
    which none can, is a SourceError. A FIFO, socket or device with an image's name is
    unreadable without being opened (reading it could wait for ever). An image its decoder
    reports damaged (cut short, bytes overwritten) is processed as far as it decoded, and
    counted (``damaged``, the first names).
    """

    def __init__(self, uri: str, paths: list[Path], source_id: int = 0):
        if not paths:
            raise SourceError(f"no images found for '{uri}' (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        self.uri, self.paths, self.source_id = uri, paths, source_id
        self.timed = False  # one picture a second, by convention: not a time to follow motion by
        self.total = len(paths)
        self.unreadable: list[str] = []
        self.damaged: list[str] = []

    def frames(self) -> Iterator[Frame]:
        for i, p in enumerate(self.paths):
            img, damaged = None, False
            if not_a_file(p) is None:
                try:
                    img, damaged = decode_image(p)
                except cv2.error:  # e.g. over OPENCV_IO_MAX_IMAGE_PIXELS (raised by OpenCV 5, None from 4)
                    pass
            if damaged and img is not None:
                self.damaged.append(str(p))
            if img is None:
                self.unreadable.append(str(p))
                if len(self.paths) == 1 or len(self.unreadable) == len(self.paths):
                    raise SourceError(f"cannot read image '{p}': " + (f"it is {not_a_file(p)}, not a file" if not_a_file(p) else
                                      f"not an image, unreadable, or over {MAX_FRAME_PIXELS // 10**6} million pixels")
                                      + (f" (nor any of the {len(self.paths)} in '{self.uri}')" if len(self.paths) > 1 else ""))
                continue
            yield Frame(img, i, float(i), time.monotonic(), self.source_id, path=str(p))

    def describe(self) -> dict:
        return {**super().describe(), "unreadable": len(self.unreadable), "unreadable_files": self.unreadable[:10],
                "damaged": len(self.damaged), "damaged_files": self.damaged[:10]}


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
        query = {k: v[-1] for k, v in parse_qs(m.group(4) or "", keep_blank_values=True).items()}
        unknown = set(query) - {"frames", "live", "seed"}
        if unknown or self.width < 16 or self.height < 16 or self.fps <= 0:
            raise SourceError(f"bad synthetic source '{uri}': use {self.SYNTAX} (size >= 16x16, fps > 0)")
        if self.width * self.height > MAX_FRAME_PIXELS:
            raise SourceError(too_large(uri, self.width, self.height))
        live = query.get("live", "1").lower()
        if live not in ("0", "1", "false", "true", "no", "yes"):
            raise SourceError(f"bad synthetic source '{uri}': live is 1 or 0 (use {self.SYNTAX})")
        self.live = live in ("1", "true", "yes")
        frames, seed = query.get("frames"), query.get("seed", "0")
        if not all(re.fullmatch(r"-?[0-9]+", v) for v in ([] if frames is None else [frames]) + [seed]):
            raise SourceError(f"bad synthetic source '{uri}': frames and seed must be integers")
        self.total = int(frames) if frames is not None else (None if self.live else 300)
        self.seed = int(seed)
        if self.total is not None and self.total < 1:
            raise SourceError(f"bad synthetic source '{uri}': frames must be 1 or more (leave it out of a live one to run until stopped)")
        if self.seed < 0:
            raise SourceError(f"bad synthetic source '{uri}': seed must be 0 or more")
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
    """Deterministic scene: sky, road, and a few coloured shapes moving across it.

    Drawn with numpy alone (no OpenCV drawing or text), so a seed and an index give the same
    pixels on every OpenCV version: tests and the tiny model's calibration rest on them.
    """

    def __init__(self, width: int, height: int, seed: int = 0, objects: int = 6):
        self.w, self.h = width, height
        rng = np.random.default_rng(seed)
        y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        sky = np.array([200, 160, 110], np.float32) * (1 - y) + np.array([90, 90, 90], np.float32) * y
        bg = np.broadcast_to(sky, (height, width, 3)).copy()
        horizon = height * 2 // 5
        bg[horizon:] = 80 + rng.normal(0, 6, (height - horizon, width, 1)).astype(np.float32)
        self.background = bg.clip(0, 255).astype(np.uint8)
        lane = max(2, width // 200)
        self.background[horizon:, width // 2 - lane // 2 : width // 2 - lane // 2 + lane] = 220
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
                _fill(img, (x - r, y - r // 2, x + r, y + r // 2), o["color"], lambda xs, ys: np.True_)
            elif o["kind"] == 1:
                q = r // 2
                _fill(img, (x - q, y - q, x + q, y + q), o["color"], lambda xs, ys, x=x, y=y, q=q: (xs - x) ** 2 + (ys - y) ** 2 <= q * q)
            else:
                _fill(img, (x - r, y - r, x + r, y + r // 2), o["color"], _triangle((x, y - r), (x - r, y + r // 2), (x + r, y + r // 2)))
        _digits(img, f"{index:06d}", 8, 8, 3, (255, 255, 255))
        return img


def _fill(img: np.ndarray, box: tuple[int, int, int, int], color, inside) -> None:
    """Paint ``color`` on the pixels of the inclusive box (x1, y1, x2, y2), clipped to the image,
    where ``inside(xs (1, W), ys (H, 1))`` is true."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = max(box[0], 0), max(box[1], 0), min(box[2], w - 1), min(box[3], h - 1)
    if x2 < x1 or y2 < y1:
        return
    xs, ys = np.arange(x1, x2 + 1, dtype=np.int32)[None, :], np.arange(y1, y2 + 1, dtype=np.int32)[:, None]
    where = np.broadcast_to(inside(xs, ys), (len(ys), xs.shape[1]))[:, :, None]
    np.copyto(img[y1 : y2 + 1, x1 : x2 + 1], np.asarray(color, np.uint8), where=where)


def _triangle(a, b, c):
    """The pixels of a triangle (its edges included), for ``_fill``."""
    def edge(p, q, xs, ys):
        return (q[0] - p[0]) * (ys - p[1]) - (q[1] - p[1]) * (xs - p[0])

    def inside(xs, ys):
        e = [edge(a, b, xs, ys), edge(b, c, xs, ys), edge(c, a, xs, ys)]
        return ((e[0] >= 0) & (e[1] >= 0) & (e[2] >= 0)) | ((e[0] <= 0) & (e[1] <= 0) & (e[2] <= 0))
    return inside


# 3x5 digit glyphs, one string of 15 cells (row by row) per digit
_GLYPHS = {d: np.array([c == "#" for c in g]).reshape(5, 3) for d, g in zip("0123456789", (
    "####.##.##.####", ".#.##..#..#.###", "###..#####..###", "###..####..####", "#.##.####..#..#",
    "####..###..####", "####..####.####", "###..#..#..#..#", "####.#####.####", "####.####..####"))}


def _digits(img: np.ndarray, text: str, x: int, y: int, cell: int, color) -> None:
    """Write ``text`` (digits) at (x, y) in blocky 3x5 glyphs of ``cell``-pixel squares."""
    for k, ch in enumerate(text):
        glyph = _GLYPHS[ch].repeat(cell, 0).repeat(cell, 1)[:, :, None]
        x0 = x + k * 4 * cell
        region = img[y : y + glyph.shape[0], x0 : x0 + glyph.shape[1]]
        np.copyto(region, np.asarray(color, np.uint8), where=glyph[: region.shape[0], : region.shape[1]])


def open_source(uri: str, source_id: int = 0, reconnect: float = RECONNECT_S, device: str = "cpu", stall: float = STALL_S,
                stop: threading.Event | None = None) -> Source:
    """Open any supported source by its URI; raises SourceError with a fix when it cannot.

    - ``0``, ``1``, ``/dev/video0``: a camera (OpenCV)
    - ``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``srt://``: a network stream (PyAV)
    - ``clip.mp4`` (mp4/mkv/avi/mov/webm ...): a video file (PyAV, threaded decoding)
    - ``img.jpg``, ``folder/``, ``"frames/*.png"``: images
    - ``synthetic:1280x720@30``: generated frames (see :class:`SyntheticSource`)

    reconnect: seconds a dropped camera or network stream is retried before the run ends (0: never).
    stall: seconds a network stream may take to open or send nothing before it counts as down.
    stop: once set, a camera or network stream stops waiting (to open, for a frame, to reconnect).
    device: where the model runs; with ``cuda`` videos and streams are decoded on the GPU
    (FFmpeg's cuda hwaccel, frames then copied to host memory) where FFmpeg can, else on the CPU.
    """
    hwaccel = "cuda" if device.startswith("cuda") else None
    uri = str(uri)
    if uri.startswith("synthetic:"):
        return SyntheticSource(uri, source_id)
    if uri.isdigit() or uri.startswith("/dev/video"):
        return CameraSource(uri, source_id, reconnect, stop=stop)
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in NETWORK_SCHEMES:
        return PyAVSource(uri, live=True, source_id=source_id, open_timeout=stall, reconnect=reconnect, hwaccel=hwaccel, stop=stop)
    if scheme:
        raise SourceError(f"unsupported source scheme '{scheme}://': use one of {', '.join(NETWORK_SCHEMES)}")
    path = Path(uri).expanduser()
    if any(ch in uri for ch in "*?[") and not path.exists():  # a glob; an existing name ("clip [1080p].mp4") wins
        paths = sorted(Path(p) for p in globlib.glob(uri) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        return ImageSource(uri, paths, source_id)
    if path.is_dir():
        return ImageSource(uri, sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), source_id)
    if not path.exists():
        raise SourceError(f"source '{uri}' not found: give a video file, image, folder, glob, camera index, stream URL or synthetic:WxH@FPS")
    if (what := not_a_file(path)) is not None:
        raise SourceError(f"source '{uri}' is {what}, not a file: give a video or image file, or stream it in over "
                          "tcp://, udp:// or rtsp://")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(uri, [path], source_id)
    if path.stat().st_size == 0:
        raise SourceError(f"source '{uri}' is an empty file")
    return PyAVSource(str(path), live=False, source_id=source_id, hwaccel=hwaccel)
