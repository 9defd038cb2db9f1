import json
import threading
import time
import warnings
from fractions import Fraction

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.sources import CameraSource, ImageSource, PyAVSource, Reconnecting, SourceError, SyntheticScene, SyntheticSource, open_source
from tests.conftest import Publisher, make_clip, needs_ffmpeg, needs_rtsp_server, open_when_up
from tests.fakes import FlakySource


def test_video_file_frames_are_ordered_with_pts(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=20, size=(160, 120), fps=25)
    src = open_source(str(clip))
    assert isinstance(src, PyAVSource) and not src.live
    assert src.fps == 25 and src.total == 20
    frames = list(src.frames())
    assert [f.index for f in frames] == list(range(20))
    assert [f.pts for f in frames] == pytest.approx([i / 25 for i in range(20)])
    assert frames[0].image.shape == (120, 160, 3)
    assert all(a.captured_at <= b.captured_at for a, b in zip(frames, frames[1:]))


@pytest.mark.parametrize("suffix, codec", [(".mkv", "libx264"), (".avi", "mpeg4"), (".webm", "libvpx-vp9")])
def test_other_containers(tmp_path, suffix, codec):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    path = tmp_path / f"c{suffix}"
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            vf = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 40, np.uint8), format="bgr24")
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    assert len(list(open_source(str(path)).frames())) == 5


def test_images_folder_glob_and_file(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((10, 12, 3), i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    folder = open_source(str(tmp_path))
    assert isinstance(folder, ImageSource) and folder.total == 3
    assert [int(f.image[0, 0, 0]) for f in folder.frames()] == [0, 1, 2]
    assert open_source(str(tmp_path / "0*.png")).total == 3
    assert open_source(str(tmp_path / "01.png")).total == 1


def test_an_existing_name_with_glob_characters_is_that_file_not_a_pattern(tmp_path):
    clip = make_clip(tmp_path / "clip [1080p] take?1.mp4", frames=3, size=(64, 48))
    src = open_source(str(clip))
    assert isinstance(src, PyAVSource) and len(list(src.frames())) == 3
    folder = tmp_path / "shots [a]"
    folder.mkdir()
    cv2.imwrite(str(folder / "x.png"), np.zeros((8, 8, 3), np.uint8))
    assert isinstance(open_source(str(folder)), ImageSource)
    assert len(open_source(str(tmp_path / "shots*" / "*.png")).paths) == 1  # and a pattern is still one


def test_synthetic_file_like_and_live():
    src = open_source("synthetic:64x48@30?live=0&frames=5&seed=2")
    assert isinstance(src, SyntheticSource) and not src.live and src.total == 5
    frames = list(src.frames())
    assert len(frames) == 5 and frames[0].image.shape == (48, 64, 3)
    assert not np.array_equal(frames[0].image, frames[4].image)  # things move
    again = list(open_source("synthetic:64x48@30?live=0&frames=5&seed=2").frames())
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, again))  # deterministic

    live = open_source("synthetic:64x48@50?frames=10")
    assert live.live and live.fps == 50
    t0 = time.monotonic()
    assert len(list(live.frames())) == 10
    assert time.monotonic() - t0 >= 9 / 50 * 0.9  # paced by the clock


def test_synthetic_live_skips_ticks_when_held_up():
    src = open_source("synthetic:32x32@100?frames=30")
    got = []
    for f in src.frames():
        got.append(f.index)
        if f.index == 0:
            time.sleep(0.1)  # a slow consumer: ~10 ticks pass
    assert src.drops >= 5 and len(got) + src.drops == 30 and got == sorted(got)


@pytest.mark.parametrize(
    "uri, message",
    [
        ("synthetic:12x", "bad synthetic source"),
        ("synthetic:8x8@30", "bad synthetic source"),
        ("synthetic:64x48@30?color=red", "bad synthetic source"),
        ("synthetic:64x48@30?frames=ten", "must be integers"),
        ("synthetic:64x48@30?frames=-5", "frames must be 1 or more"),  # (before: 0 frames, exit 0)
        ("synthetic:64x48@30?live=0&frames=0", "frames must be 1 or more"),
        ("synthetic:64x48@30?seed=-1", "seed must be 0 or more"),
        ("synthetic:64x48@30?live=maybe", "live is 1 or 0"),
        ("synthetic:64x48@30?frames=", "must be integers"),  # (before: dropped, so it ran for ever)
        ("synthetic:64x48@30?frames=1_0", "must be integers"),
        ("missing.mp4", "not found"),
        ("ftp://example/x.mp4", "unsupported source scheme"),
        ("nothing/*.png", "no images found"),
    ],
)
def test_bad_uris(uri, message):
    with pytest.raises(SourceError, match=message):
        open_source(uri)


def test_empty_and_non_video_files(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="empty file"):
        open_source(str(empty))
    text = tmp_path / "notes.mp4"
    text.write_text("hello, not a video\n" * 50)
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(text))


def test_missing_camera_is_a_clear_error():
    with pytest.raises(SourceError, match="cannot open camera '/dev/video99'"):
        CameraSource("/dev/video99")


def test_a_stream_down_at_start_is_retried_like_a_dropped_one_then_one_line():
    t0 = time.monotonic()
    src = open_source("rtsp://127.0.0.1:1/none", reconnect=1.0)  # does not raise: the run can start the others
    assert time.monotonic() - t0 < 5 and src.fps is None
    with warnings.catch_warnings(record=True) as caught, \
            pytest.raises(SourceError, match=r"'rtsp://127.0.0.1:1/none' was down from the start \(cannot open .*Connection refused.*\) "
                                             r"and did not come back in 1 s \(\d+ attempts\)"):
        warnings.simplefilter("always")
        list(src.frames())
    assert 0.9 < time.monotonic() - t0 < 5
    assert any("is down after frame 0 (cannot open" in str(w.message) for w in caught)
    assert len(src.gaps) == 1 and src.gaps[0]["ended"] is False and src.gaps[0]["attempts"] >= 2


@pytest.mark.parametrize("uri, reconnect", [("rtsp://127.0.0.1:1/none", 0), ("foo://x", 30)])
def test_a_stream_that_cannot_be_opened_is_a_clear_error_at_once_without_reconnect_or_for_ever(uri, reconnect):
    from pipeline.sources import PyAVSource

    t0 = time.monotonic()
    with pytest.raises(SourceError, match=f"cannot open '{uri}'"):
        PyAVSource(uri, live=True, reconnect=reconnect)
    assert time.monotonic() - t0 < 5


def test_describe():
    d = open_source("synthetic:64x48@30").describe()
    assert d == {"uri": "synthetic:64x48@30", "live": True, "fps": 30.0, "total": None}
    assert open_source("synthetic:64x48@29.97").fps == Fraction(2997, 100)


def test_http_stream_through_pyav(tmp_path):
    """The network path: an MP4 served over HTTP on 127.0.0.1, read as a live stream."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    make_clip(tmp_path / "c.ts", frames=15, size=(96, 64))  # MPEG-TS: a streamable container

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # MPEG-TS carries no duration, so its end looks like a dropped live stream: no reconnecting here
        src = open_source(f"http://127.0.0.1:{server.server_address[1]}/c.ts", reconnect=0)
        assert isinstance(src, PyAVSource) and src.live and src.total is None
        frames = list(src.frames())
        assert [f.index for f in frames] == list(range(15)) and frames[0].image.shape == (64, 96, 3)
    finally:
        server.shutdown()
        server.server_close()


def _read_through_outage(src, pub, before: int, after: int, outage_s: float, kill=None) -> list:
    """Read ``before`` frames, kill the publisher (or ``kill``), bring it back after ``outage_s``, read ``after`` more."""
    frames, got = src.frames(), []
    try:
        for f in frames:
            got.append(f)
            if len(got) == before:
                (kill or pub.kill)()
                threading.Timer(outage_s, pub.start).start()
            if len(got) == before + after:
                break
    finally:
        frames.close()
    return got


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["http", "tcp"])
def test_a_live_stream_reconnects_when_its_publisher_comes_back(tmp_path, kind):
    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(96, 64), fps=25)
    with Publisher(clip, kind) as pub:
        src = open_when_up(pub.url, reconnect=20)
        got = _read_through_outage(src, pub, before=15, after=30, outage_s=1.0)
    assert [f.index for f in got] == list(range(45))  # the run went on, indices unbroken
    assert len(src.gaps) == 1 and src.gaps[0]["attempts"] >= 2  # refused while it was down
    gap = src.gaps[0]["seconds"]
    assert gap >= 0.5  # it was down for 1 s (minus what was buffered)
    pts = [f.pts for f in got]
    assert all(b > a for a, b in zip(pts, pts[1:]))  # time keeps going forward across the gap
    assert max(b - a for a, b in zip(pts, pts[1:])) >= 0.5  # and shows the gap
    d = src.describe()
    assert d["gaps"] == src.gaps and d["gap_s"] == round(gap, 3) and d["reconnect_s"] == 20


@needs_rtsp_server
def test_rtsp_reconnects_after_the_server_restarts(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(96, 64), fps=25)
    with Publisher(clip, "rtsp") as pub:
        src = open_when_up(pub.url, reconnect=20)

        def server_down():
            pub.kill()
            pub.kill_server()

        got = _read_through_outage(src, pub, before=15, after=30, outage_s=1.0, kill=server_down)
    assert [f.index for f in got] == list(range(45)) and len(src.gaps) == 1


@needs_ffmpeg
def test_a_stream_that_stays_down_ends_the_run_with_one_line(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(96, 64), fps=25)
    with Publisher(clip, "tcp") as pub:
        src = open_when_up(pub.url, reconnect=1.5)
        frames = src.frames()
        next(frames)
        pub.kill()
        with pytest.raises(SourceError, match=r"did not come back in 1.5 s .*raise --reconnect"):
            for _ in frames:
                pass


@needs_ffmpeg
def test_reconnect_0_ends_the_stream_when_it_drops(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(96, 64), fps=25)
    with Publisher(clip, "tcp") as pub:
        src = open_when_up(pub.url, reconnect=0)
        frames, n = src.frames(), 0
        for _ in frames:
            n += 1
            if n == 10:
                pub.kill()
    assert n >= 10 and src.gaps == []


def test_interrupt_stops_the_wait_for_a_reconnect(tmp_path):
    src = FlakySource()
    threading.Timer(0.5, src.interrupt).start()
    t0 = time.monotonic()
    assert len(list(src.frames())) == 1  # the stream ends quietly instead of retrying for 60 s
    assert time.monotonic() - t0 < 30 and src.opened >= 2


def _damage(data: bytes, seed: int = 0, hits: int = 20) -> bytes:
    """Overwrite ``hits`` 200-byte runs in the middle half of a file with random bytes."""
    rng, bad = np.random.default_rng(seed), bytearray(data)
    for _ in range(hits):
        i = int(rng.integers(len(data) // 4, 3 * len(data) // 4))
        bad[i:i + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    return bytes(bad)


def test_damaged_packets_are_skipped_and_counted(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=60, size=(160, 120))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(_damage(clip.read_bytes()))
    src = open_source(str(bad))
    frames = list(src.frames())
    assert 0 < len(frames) < 60 and src.corrupt_packets > 0
    assert [f.index for f in frames] == list(range(len(frames)))
    assert src.describe()["corrupt_packets"] == src.corrupt_packets


def test_a_truncated_stream_file_gives_its_first_part(tmp_path):
    clip = make_clip(tmp_path / "c.ts", frames=60, size=(160, 120))
    cut = tmp_path / "cut.ts"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    frames = list(open_source(str(cut)).frames())
    assert 10 < len(frames) < 60


def faststart(clip, out):
    """The clip remuxed with its index (moov) at the front, as web-ready MP4s are."""
    import av

    with av.open(str(clip)) as src, av.open(str(out), "w", options={"movflags": "+faststart"}) as dst:
        s = dst.add_stream_from_template(src.streams.video[0])
        for p in src.demux(src.streams.video[0]):
            if p.dts is not None:
                p.stream = s
                dst.mux(p)
    return out


def test_a_truncated_faststart_mp4_says_how_many_declared_frames_it_lacked(tmp_path):
    whole = faststart(make_clip(tmp_path / "c.mp4", frames=60, size=(160, 120)), tmp_path / "fast.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    src = open_source(str(cut))
    assert src.total == 60  # the index at the front declares them all
    frames = list(src.frames())
    assert 5 < len(frames) < 60 and src.missing_frames == 60 - len(frames)
    assert src.describe()["missing_frames"] == 60 - len(frames)
    whole_src = open_source(str(whole))
    assert len(list(whole_src.frames())) == 60 and whole_src.missing_frames == 0


@pytest.mark.parametrize("content, message", [
    (lambda clip: clip.read_bytes()[: clip.stat().st_size // 2], "truncated"),  # MP4 index (moov) is at the end
    (lambda clip: b"this is not a video\n" * 50, "not a video"),
    (lambda clip: bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8)), "not a video"),
])
def test_unreadable_files_are_one_line_errors(tmp_path, content, message):
    clip = make_clip(tmp_path / "c.mp4", frames=20, size=(96, 64))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content(clip))
    with pytest.raises(SourceError, match=message) as err:
        list(open_source(str(bad)).frames())
    assert "\n" not in str(err.value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=4000), cut=st.floats(0.0, 1.0))
def test_fuzzed_bytes_as_video_fail_cleanly_or_decode(tmp_path, data, cut):
    """Random bytes, or a real clip cut anywhere, as video input: frames or a SourceError, nothing else."""
    clip = tmp_path / "fuzz-src.ts"
    if not clip.exists():
        make_clip(clip, frames=10, size=(64, 48))
    path = tmp_path / "fuzz.ts"
    real = clip.read_bytes()
    path.write_bytes(data if len(data) % 2 else real[: int(len(real) * cut)] + data)
    try:
        for f in open_source(str(path)).frames():
            assert f.image.ndim == 3 and f.image.dtype == np.uint8
    except SourceError as exc:
        assert "\n" not in str(exc)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the fallback on a machine without a GPU")
def test_hardware_decoding_falls_back_to_the_cpu_with_one_line(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = open_source(str(clip), device="cuda")
        frames = list(src.frames())
    assert len(frames) == 6 and src.describe()["hwaccel"] is None
    lines = [str(w.message) for w in caught if "hardware decoding" in str(w.message)]
    assert len(lines) == 1 and "decoding on the CPU" in lines[0] and "\n" not in lines[0]
    ref = list(open_source(str(clip)).frames())
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, ref))
    assert open_source(str(clip)).describe()["hwaccel"] is None  # cpu: never asked


def test_an_unreadable_image_in_a_folder_is_skipped_and_counted(tmp_path):
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((32, 48, 3), 40 * i, np.uint8))
    (folder / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)  # a cut-off download
    src = open_source(str(folder))
    frames = list(src.frames())
    assert [f.index for f in frames] == [0, 1, 3]  # the index is the image's place in the folder
    d = src.describe()
    assert d["unreadable"] == 1 and d["unreadable_files"] == [str(folder / "2.png")]
    for p in folder.iterdir():
        p.write_bytes(b"not an image")
    with pytest.raises(SourceError, match="nor any of the 4"):
        list(open_source(str(folder)).frames())


def test_a_run_over_a_folder_with_a_bad_image_finishes_and_says_so(tmp_path):
    import cv2

    from tests.test_cli import rtpipe

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), np.full((32, 48, 3), 60 * i, np.uint8))
    (folder / "1.jpg").write_bytes(b"\xff\xd8\xff" + b"x" * 20)
    js = tmp_path / "d.jsonl"
    r = rtpipe("run", folder, "--model", "tiny-seg", "--json", js)
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["index"] for x in js.read_text().splitlines()] == [0, 2]
    assert "1 unreadable image(s) skipped" in r.stderr and "1.jpg" in r.stderr


def test_the_image_decoders_own_stderr_lines_are_hidden_when_asked_and_nothing_else(tmp_path, capfd, monkeypatch):
    import os

    import pipeline.sources as sources
    from tests.fakes import cut_images

    jpg, png = cut_images(tmp_path)
    monkeypatch.setattr(sources, "HIDE_DECODER_MESSAGES", False)
    assert sources.read_image(jpg) is not None and sources.read_image(png) is None
    err = capfd.readouterr().err
    assert "Premature end of JPEG file" in err and "libpng error" in err  # written to fd 2, past OpenCV's log level
    monkeypatch.setattr(sources, "HIDE_DECODER_MESSAGES", True)
    assert sources.read_image(jpg) is not None and sources.read_image(png) is None
    assert capfd.readouterr().err == ""

    def imread(path, flags):  # another thread writes to stderr while an image decodes
        os.write(2, b"Corrupt JPEG data: 3 extraneous bytes before marker 0xd9\nanother thread's line\n")

    monkeypatch.setattr(sources.cv2, "imread", imread)
    assert sources.read_image(jpg) is None
    assert capfd.readouterr().err == "another thread's line\n"


def test_a_file_ffmpeg_cannot_read_is_named_once_with_what_is_wrong_and_no_errno(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8)))
    with pytest.raises(SourceError) as err:
        open_source(str(bad))
    text = str(err.value)
    assert text.count("clip.mp4") == 1 and "Errno" not in text and "1094995529" not in text, text
    assert "not a video file FFmpeg can read (invalid data found when processing input)" in text and "ffprobe" in text


class Stalling(Reconnecting):
    """A live stream whose server stays up but stops sending: after ``good`` frames every read
    times out (the publisher died), every reopen succeeds; ``back_after`` reopens, frames flow again."""

    uri, live, source_id, fps = "stalling", True, 0, None

    def __init__(self, reconnect: float, good: int = 5, back_after: int | None = None):
        super().__init__()
        self.reconnect, self.good, self.back_after = reconnect, good, back_after
        self.opens = 0
        self._handle = self._open()

    def _open(self):
        self.opens += 1
        return self.opens

    def _read(self, handle):
        if handle == 1 or (self.back_after is not None and handle > self.back_after):
            for _ in range(self.good):
                yield np.zeros((8, 8, 3), np.uint8), None
        time.sleep(0.15)  # the read timeout
        if handle == 1 or self.back_after is None or handle <= self.back_after:
            raise SourceError("read timed out")

    def _close(self, handle):
        pass


def test_a_stream_that_is_connected_but_silent_is_given_up_after_the_reconnect_time():
    src = Stalling(reconnect=1.0)
    t0 = time.monotonic()
    with warnings.catch_warnings(record=True) as caught, pytest.raises(SourceError, match="did not come back in 1 s"):
        warnings.simplefilter("always")
        frames = []
        for f in src.frames():
            frames.append(f)
    took = time.monotonic() - t0
    assert len(frames) == 5 and took < 2.5  # not for ever: every reopen "succeeded"
    assert len(src.gaps) == 1 and src.gaps[0]["ended"] is False and src.gaps[0]["attempts"] >= 3
    assert 0.9 < src.gaps[0]["seconds"] < 2.5  # one outage, measured from the last frame
    assert any("is down after frame 5" in str(w.message) for w in caught)


def test_an_outage_is_one_gap_from_the_last_frame_to_the_first_after_it():
    src = Stalling(reconnect=10.0, back_after=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = []
        t_last = t_back = None
        for f in src.frames():
            frames.append(f)
            if f.index == 4:
                t_last = time.monotonic()
            if f.index == 5:
                t_back = time.monotonic()
            if len(frames) == 8:
                break
    assert len(src.gaps) == 1 and "ended" not in src.gaps[0]
    assert src.gaps[0]["after_frame"] == 5 and src.gaps[0]["attempts"] == 3
    assert src.gaps[0]["seconds"] == pytest.approx(t_back - t_last, abs=0.1)
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)
    assert frames[5].pts - frames[4].pts == pytest.approx(t_back - t_last, abs=0.1)  # the lost time, once
    messages = [str(w.message) for w in caught]
    assert sum("is down" in m for m in messages) == 1 and sum("is back after" in m for m in messages) == 1


def _timeline(src, fault, before_s: float = 1.0, after_s: float = 1.5) -> tuple[list, float, float]:
    """Read ``src`` for ``before_s``, run ``fault()`` (in a thread: it stalls and restores the
    publisher and returns when it is back), then read until ``after_s`` of frames after it.
    Returns (frames, when the fault began, when it ended) on the monotonic clock."""
    got, marks, frames = [], {}, src.frames()

    def run_fault():
        marks["down"] = time.monotonic()
        fault()
        marks["up"] = time.monotonic()

    try:
        for f in frames:
            got.append(f)
            if "down" not in marks and f.captured_at - got[0].captured_at >= before_s:
                threading.Thread(target=run_fault, daemon=True).start()
                while "down" not in marks:
                    time.sleep(0.001)
            if "up" in marks and f.captured_at - marks["up"] >= after_s:
                break
    finally:
        frames.close()
    return got, marks["down"], marks["up"]


def _assert_honest_timeline(src, got, down: float, up: float, period: float) -> None:
    """One gap, from the last frame that arrived before the fault to the first after it (within
    two frame periods); pts always forward, showing that gap once; the pts cover the wall time."""
    before = [f for f in got if f.captured_at <= down]
    after = [f for f in got if f.captured_at > up]
    true_gap = after[0].captured_at - before[-1].captured_at
    assert len(src.gaps) == 1, src.gaps
    assert src.gaps[0]["seconds"] == pytest.approx(true_gap, abs=2 * period), (src.gaps, true_gap)
    pts = [f.pts for f in got]
    assert all(b > a for a, b in zip(pts, pts[1:])), "pts went backwards"
    assert after[0].pts - before[-1].pts == pytest.approx(true_gap, abs=2 * period)  # the lost time, once
    wall = got[-1].captured_at - got[0].captured_at
    assert pts[-1] - pts[0] == pytest.approx(wall, abs=2 * period)  # the video lasts as long as the time it covers
    assert [f.index for f in got] == list(range(len(got)))


@needs_rtsp_server
def test_rtsp_publisher_paused_keeps_the_server_up_and_the_timeline_honest(tmp_path):
    """SIGSTOP the publisher for 2.5 s: the server keeps the connection but sends nothing. The
    read gives up after the stall timeout (1 s), the reopen 'succeeds' on the live server, and
    frames come back when the publisher resumes."""
    import os
    import signal

    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(96, 64), fps=25)
    with Publisher(clip, "rtsp") as pub, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = open_when_up(pub.url, reconnect=20, stall=1.0)

        def pause():
            os.kill(pub.proc.pid, signal.SIGSTOP)
            time.sleep(2.5)
            os.kill(pub.proc.pid, signal.SIGCONT)

        got, down, up = _timeline(src, pause)
    _assert_honest_timeline(src, got, down, up, period=1 / 25)
    assert src.gaps[0]["reason"] == "nothing received for 1 s"
    messages = [str(w.message) for w in caught]
    assert sum("is down after" in m for m in messages) == 1 and sum("is back after" in m for m in messages) == 1


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["http", "tcp"])
def test_a_hung_publisher_restarted_leaves_one_honest_gap(tmp_path, kind):
    """The publisher hangs (SIGSTOP) for 1.5 s, is killed and started again, as a watchdog would."""
    import os
    import signal

    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(96, 64), fps=25)
    with Publisher(clip, kind) as pub:
        src = open_when_up(pub.url, reconnect=20, stall=1.0)

        def hang_then_restart():
            os.kill(pub.proc.pid, signal.SIGSTOP)
            time.sleep(1.5)
            pub.kill()
            pub.start()  # (not probed: ffmpeg -listen serves the first client only)

        got, down, up = _timeline(src, hang_then_restart)
    _assert_honest_timeline(src, got, down, up, period=1 / 25)


@pytest.mark.parametrize("uri, shown", [
    ("rtsp://admin:hunter2@10.0.0.5:554/live", "rtsp://***@10.0.0.5:554/live"),
    ("rtsp://admin:p@ss@10.0.0.5/live?channel=1&password=hunter2", "rtsp://***@10.0.0.5/live?channel=1&password=***"),
    ("http://cam.local/video.mjpg?user=admin&pwd=x&token=t&fps=5", "http://cam.local/video.mjpg?user=***&pwd=***&token=***&fps=5"),
    ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
    ("clip [1080p].mp4", "clip [1080p].mp4"),
    ("synthetic:64x48@30?frames=3", "synthetic:64x48@30?frames=3"),
])
def test_credentials_in_urls_are_never_shown(uri, shown):
    from pipeline.sources import redact

    assert redact(uri) == shown


def test_a_stream_url_with_credentials_keeps_them_out_of_errors_warnings_and_metrics(tmp_path):
    from tests.conftest import free_port
    from tests.test_cli import rtpipe

    url = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/live?password=s3cr3t"
    mj = tmp_path / "m.json"
    r = rtpipe("run", url, "--model", "tiny-seg", "--reconnect", "1", "--json", tmp_path / "o.jsonl", "--metrics-json", mj)
    assert r.returncode == 1 and "***@127.0.0.1" in r.stderr, r.stderr
    text = r.stdout + r.stderr + mj.read_text()
    assert "hunter2" not in text and "s3cr3t" not in text and "admin" not in text


def _png_header_only(path, width, height):
    """A PNG whose header declares width x height (and whose data is a few bytes): decoding it
    for real would need width * height * 3 bytes."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def test_frames_over_the_size_cap_are_refused_before_they_are_decoded(tmp_path):
    from pipeline.sources import MAX_FRAME_PIXELS

    y4m = tmp_path / "huge.y4m"  # a raw-video header declaring 16000x16000 frames (FFmpeg refuses larger itself)
    y4m.write_bytes(b"YUV4MPEG2 W16000 H16000 F30:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x00" * 1000)
    with pytest.raises(SourceError, match=r"has 16000x16000 frames: larger than rtpipe takes \(67 million pixels"):
        open_source(str(y4m))
    with pytest.raises(SourceError, match="larger than rtpipe takes"):
        open_source("synthetic:100000x100000")
    assert 7680 * 4320 <= MAX_FRAME_PIXELS  # 8K UHD is within it


def test_an_image_over_the_size_cap_in_a_folder_is_skipped_and_counted(tmp_path):
    from tests.test_cli import rtpipe

    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((32, 48, 3), 90, np.uint8))
    _png_header_only(folder / "b.png", 60000, 60000)  # 10.8 GB if decoded
    js = tmp_path / "o.jsonl"
    r = rtpipe("run", folder, "--model", "tiny-seg", "--json", js)
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["index"] for x in js.read_text().splitlines()] == [0]
    assert "1 unreadable image(s) skipped" in r.stderr and "b.png" in r.stderr


@pytest.mark.parametrize("uri, shown", [
    ("rtsp://user:pa/ss@cam.local/live", "rtsp://***@cam.local/live"),  # an unencoded / in the password
    ("rtsp://cam.local/live;password=x;channel=2", "rtsp://cam.local/live;password=***;channel=2"),
    ("http://cam.local/v#token=abc", "http://cam.local/v#token=***"),
    ("http://cam.local/v?%70assword=abc&a=1", "http://cam.local/v?%70assword=***&a=1"),
])
def test_credentials_are_hidden_however_they_are_written(uri, shown):
    from pipeline.sources import redact

    assert redact(uri) == shown


def test_debug_tracebacks_do_not_show_credentials():
    from tests.test_cli import rtpipe

    r = rtpipe("run", "rtsp://admin:S3cret@127.0.0.1:1/x?token=abc", "--reconnect", "0", "--debug")
    assert r.returncode == 2 and "Traceback" in r.stdout + r.stderr
    assert "S3cret" not in r.stdout + r.stderr and "token=abc" not in r.stdout + r.stderr


@pytest.mark.parity
def test_synthetic_scenes_are_drawn_without_opencv(monkeypatch):
    """Tests, references and the tiny model's calibration rest on these pixels: they must be the
    same on every OpenCV version (5.1 moved putText's), so no OpenCV drawing makes them."""
    import cv2

    from pipeline.sources import SyntheticScene

    def refuse(*args, **kwargs):
        raise AssertionError("SyntheticScene drew with OpenCV")

    for name in ("putText", "line", "rectangle", "circle", "fillPoly", "fillConvexPoly", "polylines", "resize", "warpAffine"):
        monkeypatch.setattr(cv2, name, refuse)
    for w, h in ((640, 360), (400, 300), (270, 480)):
        a, b = SyntheticScene(w, h, 3), SyntheticScene(w, h, 3)
        frame = a.render(5)
        assert frame.shape == (h, w, 3) and frame.dtype == np.uint8
        assert np.array_equal(frame, b.render(5)) and not np.array_equal(frame, a.render(6))
        colours = {o["color"] for o in a.objects}
        assert sum((frame == c).all(-1).any() for c in colours) >= 3  # the shapes are painted
        assert (frame[8:23, 8:17] == 255).all(-1).any()  # the frame number's first digit


def _video_span(path) -> float:
    """Seconds a video covers: from its first frame's start to its last frame's end."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = sorted(float(f.pts * f.time_base) for f in c.decode(s))
        return pts[-1] - pts[0] + 1 / float(s.average_rate or s.guessed_rate)


@needs_ffmpeg
@pytest.mark.parametrize("kind, stall", [("tcp", 5.0), pytest.param("rtsp", 1.0, marks=needs_rtsp_server)])
def test_a_backlog_that_arrives_in_a_burst_keeps_its_spacing_and_the_video_covers_the_wall_time(tmp_path, kind, stall):
    """The publisher stops for 2.5 s (SIGSTOP) and then lets out its backlog at once. On one
    connection (tcp, the stall timeout not reached) the late frames keep their own spacing and
    fill the time they were captured in: no gap at all. Through a reopened connection (rtsp,
    stall 1 s) the time shows once, as one gap; either way the saved video lasts as long as
    the time it covers (its pts, within one frame period; they within two of the wall time),
    not one slot per late frame longer (before: 92 late frames, 3.7 s too long)."""
    import os
    import signal

    from pipeline.sinks import VideoSink
    from pipeline.types import Detections

    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(96, 64), fps=25)
    with Publisher(clip, kind) as pub, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = open_when_up(pub.url, reconnect=20, stall=stall)

        def pause():
            os.kill(pub.proc.pid, signal.SIGSTOP)
            time.sleep(2.5)
            os.kill(pub.proc.pid, signal.SIGCONT)

        got, down, up = _timeline(src, pause, after_s=2.0)
    period = 1 / 25
    pts = [f.pts for f in got]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    jumps = [b - a for a, b in zip(pts, pts[1:]) if b - a > 2 * period]
    if kind == "tcp":
        assert jumps == [] and src.gaps == []  # every frame came, late: none of the time was lost
    else:
        assert len(jumps) == 1 and jumps[0] == pytest.approx(src.gaps[0]["seconds"], abs=2 * period)
    sink = VideoSink(tmp_path / "out.mp4", fps=25, live=True)
    for f in got:
        sink.write(f, Detections.empty(), None)
    sink.close(True)
    wall = got[-1].captured_at - got[0].captured_at + period
    covered = pts[-1] - pts[0] + period
    assert covered == pytest.approx(wall, abs=2 * period)  # the stream's own clock, kept within LiveClock's tolerance
    # and the video within a frame of it (plus half a frame: each frame's slot is its pts rounded to the frame period)
    assert _video_span(tmp_path / "out.mp4") == pytest.approx(covered, abs=1.5 * period)


@pytest.mark.parametrize("reconnect", [30.0, 0.0])
def test_a_stream_that_opens_but_never_speaks_is_left_at_once_when_stopped(reconnect):
    """The server sends its 200 headers and then nothing: FFmpeg would wait out the whole open
    timeout (20 s here). A stop while it waits ends the open at once: the source starts down
    ("stopped while it was being opened") and its frames end at once, without a reopen."""
    from tests.conftest import SilentServer

    stop = threading.Event()
    with SilentServer() as server:
        threading.Timer(1.0, stop.set).start()
        t0 = time.monotonic()
        src = open_source(server.url, reconnect=reconnect, stall=20.0, stop=stop)
        opened = time.monotonic() - t0
        assert list(src.frames()) == []
        ended = time.monotonic() - t0
    assert 0.9 < opened < 1.5 and ended < 1.6, (opened, ended)
    assert src.down_at_start == "stopped while it was being opened"


@needs_ffmpeg
@pytest.mark.parametrize("reconnect, stall", [(1.5, 5.0), (3.0, 20.0)])
def test_a_silent_stream_is_given_up_reconnect_seconds_after_its_last_frame_whatever_the_stall_timeout(tmp_path, reconnect, stall):
    """The publisher hangs (SIGSTOP) and the connection stays up. --reconnect bounds the whole
    outage: the source ends ``reconnect`` s after its last frame (before: a whole stall timeout
    later, and more: 6 s -> 10.3 s, 30 s -> 35.0 s)."""
    import os
    import signal

    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(96, 64), fps=25)
    with Publisher(clip, "tcp") as pub:
        src = open_when_up(pub.url, reconnect=reconnect, stall=stall)
        frames, hung = src.frames(), None
        with warnings.catch_warnings(), pytest.raises(SourceError, match=rf"did not come back in {reconnect:g} s"):
            warnings.simplefilter("ignore")
            for f in frames:
                if f.index == 10:
                    os.kill(pub.proc.pid, signal.SIGSTOP)
                    hung = time.monotonic()
        gave_up = time.monotonic()
        os.kill(pub.proc.pid, signal.SIGCONT)
    assert gave_up - hung == pytest.approx(reconnect, abs=1.0)
    assert len(src.gaps) == 1 and src.gaps[0]["ended"] is False


def test_a_fifo_is_named_for_what_it_is_and_never_opened(tmp_path):
    """A named pipe given as a source is refused at once with what it is (before: "is an empty
    file"); one with an image's name in a folder is skipped and counted without being opened
    (a read would wait for a writer for ever)."""
    import os

    os.mkfifo(tmp_path / "feed.mp4")
    with pytest.raises(SourceError, match=r"'.*feed.mp4' is a named pipe \(FIFO\), not a file: .*tcp://"):
        open_source(str(tmp_path / "feed.mp4"))
    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((16, 16, 3), np.uint8))
    os.mkfifo(tmp_path / "1.png")
    src = open_source(str(tmp_path))
    assert [f.index for f in src.frames()] == [0]
    assert src.describe()["unreadable_files"] == [str(tmp_path / "1.png")]
    with pytest.raises(SourceError, match="it is a named pipe"):
        list(ImageSource("pictures", [tmp_path / "1.png"]).frames())


@pytest.mark.parametrize("damage", ["cut 500 bytes into its picture data", "600 bytes zeroed"])
def test_a_jpeg_its_decoder_reports_damaged_is_processed_and_counted(tmp_path, damage):
    """libjpeg decodes a JPEG cut short or with bytes overwritten (the lost part grey) and says so
    on stderr: the frame is processed, and counted and named as damaged (before: not at all)."""
    image = SyntheticScene(320, 240).render(0)
    data = bytearray(cv2.imencode(".jpg", image)[1].tobytes())
    if damage.startswith("cut"):
        data = data[: data.index(b"\xff\xda") + 500]  # (its headers and tables come before the scan: about 600 bytes)
    else:
        data[len(data) // 2 : len(data) // 2 + 600] = bytes(600)
    (tmp_path / "a.jpg").write_bytes(bytes(data))
    cv2.imwrite(str(tmp_path / "b.jpg"), image)
    src = open_source(str(tmp_path))
    assert [f.index for f in src.frames()] == [0, 1]  # processed, as far as it decoded
    d = src.describe()
    assert d["damaged"] == 1 and d["damaged_files"] == [str(tmp_path / "a.jpg")] and d["unreadable"] == 0


def test_a_stream_that_never_speaks_from_the_start_is_given_up_reconnect_seconds_after_its_first_open():
    """--reconnect bounds an outage that begins at the first open too, whatever the stall timeout
    (before: the open waited out the 20 s stall timeout, and --reconnect counted only after it)."""
    from tests.conftest import SilentServer

    with SilentServer() as server, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.monotonic()
        src = open_source(server.url, reconnect=1.5, stall=20.0)
        with pytest.raises(SourceError, match=r"was down from the start \(nothing received for 1.5 s\) and did not come back in 1.5 s"):
            list(src.frames())
    assert time.monotonic() - t0 == pytest.approx(1.5, abs=1.0)
