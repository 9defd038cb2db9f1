import time
from fractions import Fraction

import cv2
import numpy as np
import pytest

from pipeline.sources import CameraSource, ImageSource, PyAVSource, SourceError, SyntheticSource, open_source
from tests.conftest import make_clip


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


def test_unreachable_stream_is_a_clear_error():
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="cannot open 'rtsp://127.0.0.1:1/none'"):
        open_source("rtsp://127.0.0.1:1/none")
    assert time.monotonic() - t0 < 15


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
        src = open_source(f"http://127.0.0.1:{server.server_address[1]}/c.ts")
        assert isinstance(src, PyAVSource) and src.live and src.total is None
        frames = list(src.frames())
        assert [f.index for f in frames] == list(range(15)) and frames[0].image.shape == (64, 96, 3)
    finally:
        server.shutdown()
        server.server_close()
