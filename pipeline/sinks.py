"""Where results go: annotated video, JSONL, a heatmap, a window (the browser view: ``pipeline.browser_view``).

Files are written under a ``.partial`` name and renamed only when the run completes (or is
drained by Ctrl-C), so a file at the requested path is always a finished one.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from pipeline.ops import class_rles, rle_encode_crop
from pipeline.types import ClassMap, Detections, Frame, InputError, Labels

VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


class SinkError(InputError):
    """A sink that cannot be set up; the message says how to fix it."""


class Sink:
    """Receives every frame that leaves the pipeline, in order."""

    needs_image = False  # True: the overlay stage draws an annotated image for it
    wants_stop = False   # set by a sink (e.g. a closed window) to end the run cleanly
    path: Path | None = None  # the file it writes (kept as NAME.partial until complete), if any
    url: str | None = None  # where it can be watched (browser view), if anywhere
    shared = False  # one file for every source (the events), rather than one per source

    def write(self, frame: Frame, detections: Detections, image: np.ndarray | None) -> None:
        raise NotImplementedError

    def write_events(self, events: list) -> None:
        """A frame's line and zone events (``pipeline.analytics.Event``); most sinks ignore them."""

    def accept(self, item) -> None:
        """What the pipeline calls for each frame (a ``pipeline.paths.Item``)."""
        self.write(item.frame, item.detections, item.image)
        if item.events:
            self.write_events(item.events)

    def close(self, complete: bool) -> None:
        """Finalise. complete=False: the run failed or was aborted; keep only a .partial file."""


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def create_partial(path: Path) -> int:
    """A new, empty ``path``.partial, created by this process; returns its open descriptor.
    Whatever was at that name (a partial file of an earlier run, or a symlink planted to make
    the write land elsewhere) is removed, not followed, and the file is created exclusively
    without following links. The final rename replaces the name itself: no link followed there
    either. (Writers use the descriptor; PyAV's muxer, which opens by name, opens the file
    created here straight after.)"""
    partial = partial_path(path)
    try:
        partial.unlink()
    except FileNotFoundError:
        pass
    return os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)


def open_partial(path: Path):
    """``create_partial`` as a text file object."""
    return os.fdopen(create_partial(path), "w", encoding="utf-8")


def write_complete(path: str | Path, text: str | bytes) -> Path:
    """Write a file under its partial name and rename it once written: never half a file under the real name."""
    path = Path(path)
    with os.fdopen(create_partial(path), "wb") as f:
        f.write(text.encode("utf-8") if isinstance(text, str) else text)
    os.replace(partial_path(path), path)
    return path


def check_writable(path: Path, overwrite: bool = True) -> Path:
    """The path, if a file can be written there (tried); else SinkError saying why. Without
    ``overwrite``, an existing file (or link) at the path is refused."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise SinkError(f"output '{path}' is a directory: give a file name")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise SinkError(f"output '{path}' exists: give --overwrite to replace it, or another path")
    if not path.parent.exists():
        raise SinkError(f"output folder '{path.parent}' does not exist: create it first")
    if not os.access(path.parent, os.W_OK):
        raise SinkError(f"output folder '{path.parent}' is not writable")
    probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
    try:  # the folder may still refuse (read-only file system, quota, root-squashed mount): try it now
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))
        probe.unlink()
    except OSError as exc:
        raise SinkError(f"cannot write in '{path.parent}': {exc.strerror}: choose another output folder") from None
    return path


def flush(stream, container) -> None:
    """The frames a PyAV encoder still holds, muxed into ``container``."""
    for packet in stream.encode(None):
        container.mux(packet)


class VideoSink(Sink):
    """Annotated H.264 video through PyAV: the input's size, at the source's frame rate.

    Frames are timed by their order (every frame of a file source is kept), or with
    ``live=True`` by their pts, so a live recording whose frames were dropped still plays at
    the speed it happened. Each frame takes the slot (frame period) its pts falls in, or the
    next free one; a frame that would land more than one period after its pts (frames that
    arrived bunched, e.g. a reopened stream's backlog) is left out of the video and counted in
    ``left_out``: the video never runs ahead of the time it covers by more than one frame.
    """

    needs_image = True

    def __init__(self, path: str | Path, fps: Fraction | float | Callable[[], Fraction | None] | None, crf: int = 23,
                 preset: str = "veryfast",
                 live: bool = False):
        self.path = check_writable(Path(path))
        fmt = VIDEO_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise SinkError(f"video output '{self.path}': use one of {', '.join(VIDEO_FORMATS)}")
        self.format = fmt
        self._rate_of = fps if callable(fps) else None  # read at the first frame (a stream down at start learns it late)
        self.fps = Fraction(fps).limit_denominator(1001) if fps and not callable(fps) else Fraction(30)
        self.crf, self.preset, self.live = crf, preset, live
        self._first_pts: float | None = None
        self._last_slot = -1
        self.container = None
        self.frames = 0
        self.left_out = 0
        self.size: tuple[int, int] | None = None

    def _open(self, w: int, h: int) -> None:
        import av

        self.size = (w, h)
        if self._rate_of is not None and self._rate_of():
            self.fps = Fraction(self._rate_of()).limit_denominator(1001)
        os.close(create_partial(self.path))
        self.container = av.open(str(partial_path(self.path)), mode="w", format=self.format)
        stream = self.container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = w, h
        # 4:2:0 needs even sizes; odd-sized inputs keep their size with 4:4:4 instead.
        stream.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        stream.codec_context.thread_count = 0
        self.stream = stream

    def write(self, frame: Frame, detections: Detections, image: np.ndarray | None) -> None:
        import av

        img = frame.image if image is None else image
        h, w = img.shape[:2]
        if self.container is None:
            self._open(w, h)
        elif (w, h) != self.size:  # e.g. a folder of images of mixed sizes
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        slot = self.frames
        if self.live:  # the frame's time, in frame periods since the first frame, strictly increasing
            if self._first_pts is None:
                self._first_pts = frame.pts
            exact = float((frame.pts - self._first_pts) * self.fps)
            slot = max(round(exact), self._last_slot + 1)
            if slot - exact > 1:  # its slot is taken and the next is more than a period late: left out
                self.left_out += 1
                return
        self._last_slot = slot
        vf = av.VideoFrame.from_ndarray(img, format="bgr24")
        vf.pts = slot
        vf.time_base = 1 / self.fps
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.frames += 1

    def close(self, complete: bool) -> None:
        if self.container is None:
            return
        try:
            flush(self.stream, self.container)
        finally:
            self.container.close()
            self.container = None
        if complete:
            os.replace(partial_path(self.path), self.path)


class ImageFolderSink(Sink):
    """Annotated pictures, one per input picture, named as the input (``--save DIR`` for an
    image folder). Written into ``DIR.partial/`` and moved into ``DIR`` when the run completes,
    so a folder at the requested path only ever holds finished runs."""

    needs_image = True

    def __init__(self, path: str | Path, overwrite: bool = False):
        self.path = Path(path).expanduser()
        if self.path.is_symlink():
            raise SinkError(f"output '{self.path}' is a link: give the folder itself (outputs never follow links)")
        if self.path.exists() and not self.path.is_dir():
            raise SinkError(f"output '{self.path}' is a file: for the pictures of an image folder give a folder (--save DIR)")
        if not self.path.parent.is_dir():
            raise SinkError(f"output folder '{self.path.parent}' does not exist: create it first")
        if self.path.is_dir() and any(self.path.iterdir()) and not overwrite:
            raise SinkError(f"output folder '{self.path}' is not empty: give --overwrite to replace the pictures in it, or another folder")
        self.staging = partial_path(self.path)
        if self.staging.is_symlink() or self.staging.is_file():
            self.staging.unlink()
        elif self.staging.is_dir():
            shutil.rmtree(self.staging)
        self.staging.mkdir()
        self.written: set[str] = set()

    def write(self, frame: Frame, detections: Detections, image: np.ndarray | None) -> None:
        name = Path(Path(frame.path).name if frame.path else f"{frame.index:06d}.jpg")
        ok, data = cv2.imencode(name.suffix, frame.image if image is None else image)
        if not ok:  # a format OpenCV reads but cannot write
            name = name.with_suffix(".png")
            ok, data = cv2.imencode(".png", frame.image if image is None else image)
        stem, k = name.stem, 1
        while name.name in self.written:  # the same name from two folders of a glob
            name, k = name.with_name(f"{stem}-{k}{name.suffix}"), k + 1
        self.written.add(name.name)
        (self.staging / name.name).write_bytes(data.tobytes())

    def close(self, complete: bool) -> None:
        if not complete or not self.staging.is_dir():
            return
        self.path.mkdir(exist_ok=True)
        for f in self.staging.iterdir():
            os.replace(f, self.path / f.name)
        self.staging.rmdir()


class ImageFileSink(Sink):
    """The annotated picture of a one-picture source, at ``path`` (``--save out.jpg``)."""

    needs_image = True

    def __init__(self, path: str | Path):
        self.path = check_writable(Path(path))
        self.data: bytes | None = None

    def write(self, frame: Frame, detections: Detections, image: np.ndarray | None) -> None:
        ok, data = cv2.imencode(self.path.suffix, frame.image if image is None else image)
        if not ok:
            raise SinkError(f"cannot write a {self.path.suffix} picture: give .jpg or .png")
        self.data = data.tobytes()

    def close(self, complete: bool) -> None:
        if complete and self.data is not None:
            write_complete(self.path, self.data)


class JsonLinesFile(Sink):
    """A text file of JSON lines, opened on the first frame (a run that never starts leaves
    nothing; a complete run of zero frames leaves an empty file)."""

    def __init__(self, path: str | Path):
        self.path = check_writable(Path(path))
        self.file = None

    def _open(self) -> None:
        if self.file is None:
            self.file = open_partial(self.path)

    def _line(self, record: dict | str) -> None:
        self._open()
        self.file.write((record if isinstance(record, str) else json.dumps(record, separators=(",", ":"))) + "\n")

    def close(self, complete: bool) -> None:
        if self.file is None:
            if complete:
                write_complete(self.path, "")
            return
        if self.file.closed:
            return
        self.file.close()
        if complete:
            os.replace(partial_path(self.path), self.path)


def _label(labels: Labels, k: int) -> dict:
    return {"class_id": int(labels.class_id[k]), "class_name": labels.name(k), "score": round(float(labels.confidence[k]), 5)}


class JsonlSink(JsonLinesFile):
    """One JSON line per frame: index, pts, detections (xyxy, score, class id and name, RLE
    mask; tracker_id when a tracker ran: its id, or null for a detection no confirmed track holds;
    speed_kmh with a ground calibration: km/h, or null until its track has a speed);
    for semantic models, ``class_map``: the frame size and, per class present, its area and RLE;
    for classifiers, ``labels`` (the frame's top-5) or, per detection, ``crop_label``."""

    def __init__(self, path: str | Path, names: tuple[str, ...] | list[str]):
        super().__init__(path)
        self.names = list(names)

    def record(self, frame: Frame, dets: Detections) -> dict:
        out = []
        for i in range(len(dets)):
            cid = int(dets.class_id[i])
            d = {
                "xyxy": [round(float(v), 2) for v in dets.xyxy[i]],
                "score": round(float(dets.confidence[i]), 5),
                "class_id": cid,
                "class_name": self.names[cid] if 0 <= cid < len(self.names) else str(cid),
            }
            if dets.tracker_id is not None:
                d["tracker_id"] = int(dets.tracker_id[i]) if dets.tracker_id[i] > 0 else None
            if dets.speed_kmh is not None:
                d["speed_kmh"] = None if np.isnan(dets.speed_kmh[i]) else round(float(dets.speed_kmh[i]), 1)
            if dets.crop_labels is not None:
                d["crop_label"] = _label(dets.crop_labels, i)
            if dets.mask is not None:
                x1, y1 = dets.mask.regions[i, :2]
                d["mask"] = rle_encode_crop(dets.mask.crops[i], int(x1), int(y1), dets.mask.frame_hw)
            out.append(d)
        head = {"index": frame.index, "pts": round(frame.pts, 6), "source_id": frame.source_id}
        if frame.path is not None:
            head["path"] = frame.path
        record = {**head, "detections": out}
        if dets.class_map is not None:
            record["class_map"] = self.class_map(dets.class_map)
        if dets.labels is not None:
            record["labels"] = [_label(dets.labels, k) for k in range(len(dets.labels))]
        return record

    def class_map(self, cmap: ClassMap) -> dict:
        """A semantic segmentation, lossless and compact: per class present, its pixel count and
        the COCO RLE of its pixels (``pipeline.ops.rle_decode`` reads them back)."""
        classes = [{"class_id": cid, "class_name": self.names[cid] if cid < len(self.names) else str(cid), "area": area, "rle": rle}
                   for cid, (area, rle) in class_rles(cmap.ids).items()]
        return {"size": list(cmap.frame_hw), "classes": classes}

    def write(self, frame: Frame, detections: Detections, image: np.ndarray | None) -> None:
        self._line(self.record(frame, detections))


class EventsSink(JsonLinesFile):
    """One JSON line per line or zone event (``pipeline.analytics.Event``), every source in one
    file: each of the ``sources`` closes it, and it is complete only when every one of them was.
    Written to NAME.partial as the events happen (flushed each time), renamed at the end."""

    shared = True  # one file for every source

    def __init__(self, path: str | Path, sources: int = 1):
        super().__init__(path)
        self._open_for, self._complete = sources, True

    def write(self, frame: Frame, detections: Detections, image: np.ndarray | None) -> None:
        self._open()

    def write_events(self, events: list) -> None:
        for e in events:
            self._line(e.to_json())
        self.file.flush()  # events are few: whoever tails the .partial file sees them as they happen

    def close(self, complete: bool) -> None:
        self._open_for -= 1
        self._complete = self._complete and complete
        if self._open_for <= 0:
            super().close(self._complete)


class HeatmapSink(Sink):
    """Where the detections stood over the run: ``path`` (a .png: the heatmap colour-mapped and
    blended over the source's last frame) and the accumulated array beside it (``path`` with
    .npy: float32, the frame's size, numpy's format without pickles).

    Every frame, each detection adds 1 at its ground point (the bottom centre of its box): only
    the detections of confirmed tracks when a tracker runs (``tracker_id`` > 0), every detection
    when none does. At the end the counts are spread by a Gaussian of ``sigma`` px (default: 1 %
    of the frame's short side, at least 2 px; the same as adding a normalised Gaussian splat per
    point, at a fraction of the cost per frame), so the array sums to the number of points: a
    pixel's value is detection-frames there (divide by the frame rate for object-seconds).
    Frames of another size than the first (an image folder) are mapped onto the first's.

    Both files are written at the end, each under its ``.partial`` name first; a run that fails
    or is aborted leaves them only as ``NAME.png.partial`` and ``NAME.npy.partial`` (what was
    accumulated until then). A run that saw no frame writes neither."""

    def __init__(self, path: str | Path, sigma: float | None = None):
        self.path = check_writable(Path(path))
        if self.path.suffix.lower() != ".png":
            raise SinkError(f"heatmap '{self.path}': give a .png name (the array is written beside it as .npy)")
        self.array_path = check_writable(self.path.with_suffix(".npy"))
        self.sigma = sigma
        self.counts: np.ndarray | None = None  # (H, W) float32 points per pixel
        self.last: np.ndarray | None = None    # the last frame's picture
        self.points = 0

    def add(self, xyxy: np.ndarray, frame_hw: tuple[int, int]) -> None:
        """Count the ground points of (N, 4) boxes of a frame of size ``frame_hw``."""
        if self.counts is None:
            self.counts = np.zeros(frame_hw, np.float32)
        h, w = self.counts.shape
        if len(xyxy) == 0:
            return
        x = (xyxy[:, 0] + xyxy[:, 2]) * (0.5 * w / frame_hw[1])
        y = xyxy[:, 3] * (h / frame_hw[0])
        np.add.at(self.counts, (np.clip(y.astype(np.int32), 0, h - 1), np.clip(x.astype(np.int32), 0, w - 1)), 1.0)
        self.points += len(xyxy)

    def write(self, frame: Frame, detections: Detections, image: np.ndarray | None) -> None:
        xyxy = detections.xyxy if detections.tracker_id is None else detections.xyxy[detections.tracker_id > 0]
        self.add(xyxy, (frame.height, frame.width))
        if frame.image.shape[:2] == self.counts.shape:
            self.last = frame.image

    def heat(self) -> np.ndarray:
        """The accumulated map: the counts spread by the Gaussian (float32, frame size)."""
        h, w = self.counts.shape
        sigma = self.sigma if self.sigma is not None else max(2.0, min(h, w) / 100)
        return cv2.GaussianBlur(self.counts, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)

    def picture(self, heat: np.ndarray) -> np.ndarray:
        """The heatmap (TURBO colours, opaque where it is hottest, clear where nothing stood) over the last frame."""
        top = float(heat.max())
        level = np.sqrt(heat / top) if top > 0 else np.zeros_like(heat)  # (square root: the quiet places show too)
        colour = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_TURBO).astype(np.float32)
        base = self.last.astype(np.float32) if self.last is not None else np.zeros_like(colour)
        alpha = (0.7 * level)[..., None]
        return (base * (1 - alpha) + colour * alpha + 0.5).astype(np.uint8)

    def close(self, complete: bool) -> None:
        if self.counts is None:
            return
        heat = self.heat()
        buf = io.BytesIO()
        np.save(buf, heat, allow_pickle=False)
        ok, png = cv2.imencode(".png", self.picture(heat))
        if not ok:
            raise SinkError(f"cannot encode the heatmap picture '{self.path}'")
        files = ((self.array_path, buf.getvalue()), (self.path, png.tobytes()))
        for path, data in files:  # both written before either is renamed
            with os.fdopen(create_partial(path), "wb") as f:
                f.write(data)
        if complete:
            for path, _ in files:
                os.replace(partial_path(path), path)


def opencv_has_gui() -> bool:
    info = cv2.getBuildInformation()
    m = re.search(r"^\s*GUI:\s*(\S+)", info, re.MULTILINE)
    return bool(m) and m.group(1).upper() != "NONE"


class WindowSink(Sink):
    """A local OpenCV window; press q or Esc to end the run cleanly."""

    needs_image = True

    def __init__(self, title: str = "rtpipe"):
        if not opencv_has_gui():
            raise SinkError(
                "--show needs OpenCV with GUI support, and this one is headless: install opencv-python "
                "in place of opencv-python-headless, or watch in a browser with --serve 127.0.0.1:8080"
            )
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise SinkError(f"--show cannot open a window ({exc.err}): is there a display? try --serve instead") from exc

    def write(self, frame: Frame, detections: Detections, image: np.ndarray | None) -> None:
        cv2.imshow(self.title, frame.image if image is None else image)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.wants_stop = True

    def close(self, complete: bool) -> None:
        cv2.destroyWindow(self.title)


def picture_or_video_sink(source, out: Path, overwrite: bool) -> Sink:
    """``--save``: a video; for pictures (an image folder), a folder of annotated pictures, or one
    picture for a one-picture source given a picture's name."""
    from pipeline.sources import IMAGE_SUFFIXES

    suffix = Path(out).suffix.lower()
    if source.timed or suffix in VIDEO_FORMATS:
        return VideoSink(out, (lambda: source.fps) if source.live else source.fps, live=source.live)
    if suffix in IMAGE_SUFFIXES:
        if source.total != 1:
            raise SinkError(f"--save '{out}' is a picture's name, and '{source.uri}' has {source.total} pictures: give a folder")
        return ImageFileSink(out)
    return ImageFolderSink(out, overwrite)


def window_or_browser(serving: bool) -> Sink | None:
    """``--show``: a window where OpenCV can open one. The default install's OpenCV is the
    headless build, so there the frames go to a browser view on 127.0.0.1 (8080, or a free port)
    instead, with one warning line; the run prints its URL (None: ``--serve`` already shows them)."""
    import warnings

    if opencv_has_gui():
        return WindowSink()
    from pipeline.browser_view import BrowserView

    if serving:
        warnings.warn("--show: this OpenCV has no windows (headless build); the --serve view shows the frames", stacklevel=2)
        return None
    warnings.warn("--show: this OpenCV has no windows (headless build): showing in the browser instead "
                  "(for a window: pip uninstall opencv-python-headless && pip install opencv-python)", stacklevel=2)
    try:
        return BrowserView("127.0.0.1", 8080)
    except SinkError:  # 8080 is taken
        return BrowserView("127.0.0.1", 0)


def per_source(path: str | Path | None, i: int, n: int) -> Path | None:
    """The output file of source ``i`` of ``n``: ``out.mp4`` -> ``out-1.mp4`` (as given when n == 1)."""
    if path is None:
        return None
    p = Path(path)
    return p if n == 1 else p.with_name(f"{p.stem}-{i}{p.suffix}")


def open_sinks(sources, names, *, save: str | Path | None = None, jsonl: str | Path | None = None, show: bool = False,
               serve: tuple[str, int] | None = None, token: str | None = None,
               events: str | Path | None = None, heatmap: str | Path | None = None,
               overwrite: bool = False) -> dict[int, list[Sink]]:
    """The sinks asked for, per source id: ``save`` (annotated video; for an image folder given a
    folder name, annotated pictures named as the inputs), ``jsonl`` (detections) and ``heatmap``
    (a .png and its .npy, ``HeatmapSink``), one file per source (see ``per_source``); ``events`` (line and zone events), one file for
    every source; ``show`` (a window) and ``serve`` (browser view at
    (host, port), ``token`` to require) show the first source. ``sources`` give the frame rate
    and whether they are live; ``names`` are the model's class names. If one sink cannot be set
    up, those made before it are closed and the error is raised."""
    n = len(sources)
    sinks: dict[int, list[Sink]] = {}
    try:
        for i, source in enumerate(sources):
            own = sinks[i] = []
            if save is not None:
                own.append(picture_or_video_sink(source, per_source(save, i, n), overwrite))
            if jsonl is not None:
                own.append(JsonlSink(per_source(jsonl, i, n), names))
            if heatmap is not None:
                own.append(HeatmapSink(per_source(heatmap, i, n)))
        if events is not None:
            one = EventsSink(events, n)
            for own in sinks.values():
                own.append(one)
        if serve is not None:
            from pipeline.browser_view import BrowserView

            sinks[0].append(BrowserView(*serve, token=token))
        if show and (view := window_or_browser(serving=serve is not None)) is not None:
            sinks[0].append(view)
    except BaseException:
        for s in (s for own in sinks.values() for s in own):
            s.close(False)
        raise
    return sinks
