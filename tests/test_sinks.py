import json
import time
from fractions import Fraction

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ops.masks import rle_decode
from pipeline.sinks import JsonlSink, SinkError, VideoSink, WindowSink, opencv_has_gui, partial_path
from pipeline.types import BoxMasks, ClassMap, Detections, Frame
from tests.conftest import probe


def frame(i, w=64, h=48):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : (i * 7) % w] = (0, 200, 0)
    return Frame(img, i, i / 25, time.monotonic())


def dets(h=48, w=64):
    m = np.zeros((2, h, w), bool)
    m[0, 5:10, 5:20] = True
    return Detections([[5, 5, 20, 10], [30, 30, 40, 40]], [0.9, 0.4], [1, 0], m)


@pytest.mark.parametrize("fps, size", [(Fraction(25), (64, 48)), (Fraction(30000, 1001), (64, 48)), (Fraction(10), (63, 47))])
def test_video_sink_keeps_count_fps_and_size(tmp_path, fps, size):
    out = tmp_path / "o.mp4"
    sink = VideoSink(out, fps)
    for i in range(12):
        sink.write(frame(i, *size), Detections.empty(), None)
    assert not out.exists() and partial_path(out).exists()  # not presented as complete yet
    sink.close(complete=True)
    assert out.exists() and not partial_path(out).exists()
    info = probe(out)
    assert info == {"frames": 12, "fps": fps, "size": size}


def test_video_sink_incomplete_stays_partial(tmp_path):
    out = tmp_path / "o.mp4"
    sink = VideoSink(out, 25)
    for i in range(3):
        sink.write(frame(i), Detections.empty(), None)
    sink.close(complete=False)
    assert not out.exists() and probe(partial_path(out))["frames"] == 3


@pytest.mark.parametrize(
    "path, message",
    [("missing_dir/o.mp4", "does not exist"), ("o.gif", "use one of"), (".", "is a directory")],
)
def test_video_sink_bad_paths(tmp_path, monkeypatch, path, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SinkError, match=message):
        VideoSink(path, 25)


def test_jsonl_sink_lines(tmp_path):
    out = tmp_path / "d.jsonl"
    sink = JsonlSink(out, ["cat", "dog"])
    sink.write(frame(0), dets(), None)
    sink.write(frame(1), Detections.empty(), None)
    sink.close(complete=True)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in lines] == [0, 1] and lines[1]["detections"] == []
    d0 = lines[0]["detections"][0]
    assert d0["xyxy"] == [5, 5, 20, 10] and d0["score"] == pytest.approx(0.9) and d0["class_name"] == "dog"
    assert lines[0]["detections"][1]["class_name"] == "cat"
    mask = rle_decode(d0["mask"])
    assert mask.shape == (48, 64) and mask.sum() == 75 and mask[5:10, 5:20].all()


def test_jsonl_sink_files_appear_only_when_finished(tmp_path):
    never = JsonlSink(tmp_path / "never.jsonl", [])
    never.close(complete=False)  # the run failed before any frame: nothing is left behind
    assert list(tmp_path.iterdir()) == []
    empty = JsonlSink(tmp_path / "empty.jsonl", [])
    empty.close(complete=True)  # a finished run of zero frames: an empty file
    assert (tmp_path / "empty.jsonl").read_text() == ""


def test_window_sink_on_headless_opencv_says_what_to_do():
    if opencv_has_gui():
        pytest.skip("this OpenCV has a GUI")
    with pytest.raises(SinkError, match="opencv-python-headless.*--serve"):
        WindowSink()


def test_show_on_headless_opencv_opens_the_browser_view_instead():
    """`rtpipe run 0 --show`, the first thing a webcam user types, works on the default install."""
    import urllib.request
    import warnings

    from pipeline.browser_view import BrowserView
    from pipeline.sinks import open_sinks
    from pipeline.sources import open_source

    if opencv_has_gui():
        pytest.skip("this OpenCV has a GUI: --show opens a window")
    src = open_source("synthetic:64x48@30")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sinks = open_sinks([src], ["a"], show=True)
    view = sinks[0][0]
    try:
        assert isinstance(view, BrowserView) and view.url.startswith("http://127.0.0.1:")
        assert any("showing in the browser instead" in str(w.message) for w in caught)
        with urllib.request.urlopen(view.url, timeout=5) as r:
            assert r.status == 200
    finally:
        view.close(True)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        both = open_sinks([src], ["a"], show=True, serve=("127.0.0.1", 0))
    try:
        assert len(both[0]) == 1  # --serve already shows the frames: one view, not two
    finally:
        both[0][0].close(True)


def test_live_video_keeps_real_time_when_frames_were_dropped(tmp_path):
    import av

    out = tmp_path / "live.mp4"
    sink = VideoSink(out, 30, live=True)
    pts = [0.0, 0.1, 0.2, 0.21, 0.5, 1.0]  # a slow model: most camera frames were dropped
    for i, t in enumerate(pts):
        sink.write(Frame(np.zeros((48, 64, 3), np.uint8), i, t, 0.0), Detections.empty(), None)
    sink.close(True)
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        times = [float(f.pts * f.time_base) for f in c.decode(s)]
    assert len(times) == 6
    assert times[-1] - times[0] == pytest.approx(1.0, abs=1 / 30)  # plays over 1 s, not 6/30 s
    assert all(b > a for a, b in zip(times, times[1:]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(1, 30), w=st.integers(1, 30), n=st.integers(0, 5), seed=st.integers(0, 10_000))
def test_jsonl_lines_decode_back_to_the_detections(tmp_path, h, w, n, seed):
    rng = np.random.default_rng(seed)
    dense = rng.random((n, h, w)) > rng.random()
    dense[:, rng.integers(0, h), rng.integers(0, w)] = True  # every mask has a pixel
    masks = BoxMasks.from_dense(dense)
    xyxy = masks.regions.astype(np.float32)
    dets = Detections(xyxy, rng.random(n).astype(np.float32), rng.integers(0, 3, n).astype(np.int32), masks)
    path = tmp_path / f"f{seed}-{n}.jsonl"
    sink = JsonlSink(path, ["a", "b", "c"])
    sink.write(Frame(np.zeros((h, w, 3), np.uint8), 7, 0.25, 0.0), dets, None)
    sink.close(True)
    line = json.loads(path.read_text())
    assert line["index"] == 7 and len(line["detections"]) == n
    for k, d in enumerate(line["detections"]):
        assert d["xyxy"] == [round(float(v), 2) for v in xyxy[k]] and d["class_name"] == "abc"[d["class_id"]]
        np.testing.assert_array_equal(rle_decode(d["mask"]), dense[k])


def test_jsonl_has_tracker_ids_only_when_a_tracker_ran(tmp_path):
    from pipeline.sinks import JsonlSink

    sink = JsonlSink(tmp_path / "d.jsonl", ["a", "b"])
    d = dets()
    sink.write(frame(0), d, None)
    sink.write(frame(1), Detections(d.xyxy, d.confidence, d.class_id, d.mask, tracker_id=[3, -1]), None)
    sink.close(True)
    first, second = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert all("tracker_id" not in x for x in first["detections"])
    assert [x["tracker_id"] for x in second["detections"]] == [3, None]


def test_one_events_file_for_every_source_is_complete_only_if_every_source_was(tmp_path):
    from pipeline.analytics import Event
    from pipeline.sinks import EventsSink

    e = Event(frame=0, pts=0.0, source_id=1, tracker_id=2, class_id=0, class_name="car", event="line_in", name="g")
    ok = EventsSink(tmp_path / "ok.jsonl", sources=2)
    ok.write(frame(0), Detections.empty(), None)
    ok.write_events([e, e])
    ok.close(True)
    assert not (tmp_path / "ok.jsonl").exists()  # the other source is still running
    ok.close(True)
    assert [Event.from_json(x) for x in (tmp_path / "ok.jsonl").read_text().splitlines()] == [e, e]
    failed = EventsSink(tmp_path / "f.jsonl", sources=2)
    failed.write(frame(0), Detections.empty(), None)
    failed.write_events([e])
    failed.close(True)
    failed.close(False)  # one source failed: the file is not presented as complete
    assert not (tmp_path / "f.jsonl").exists() and partial_path(tmp_path / "f.jsonl").exists()
    quiet = EventsSink(tmp_path / "q.jsonl")
    quiet.write(frame(0), Detections.empty(), None)
    quiet.close(True)
    assert (tmp_path / "q.jsonl").read_text() == ""  # a complete run with nothing counted


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(1, 40), w=st.integers(1, 40), k=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_jsonl_class_maps_decode_back_to_the_map(tmp_path, h, w, k, seed):
    """A semantic model's class map: per class present, its area and RLE, which decode back to
    exactly its pixels; the classes cover the frame once."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, k, (h, w)).astype(np.uint8)
    path = tmp_path / f"m{seed}.jsonl"
    sink = JsonlSink(path, [f"c{i}" for i in range(k)])
    sink.write(Frame(np.zeros((h, w, 3), np.uint8), 0, 0.0, 0.0), Detections.empty(class_map=ClassMap(ids)), None)
    sink.close(True)
    cmap = json.loads(path.read_text())["class_map"]
    assert cmap["size"] == [h, w] and sum(c["area"] for c in cmap["classes"]) == h * w
    for c in cmap["classes"]:
        pixels = rle_decode(c["rle"])
        np.testing.assert_array_equal(pixels, ids == c["class_id"])
        assert c["area"] == int(pixels.sum()) > 0 and c["class_name"] == f"c{c['class_id']}"


def test_jsonl_has_classifier_labels(tmp_path):
    from pipeline.types import Labels

    path = tmp_path / "l.jsonl"
    sink = JsonlSink(path, ["car"])
    frame = Frame(np.zeros((10, 10, 3), np.uint8), 0, 0.0, 0.0)
    sink.write(frame, Detections.empty(labels=Labels([2, 0], [0.75, 0.125], ("x", "y", "z"))), None)
    dets = Detections(np.array([[1, 1, 5, 5], [2, 2, 8, 8]], np.float32), [0.9, 0.8], [0, 0])
    dets.crop_labels = Labels([1, 0], [0.5, 0.25], ("red", "blue"))
    sink.write(frame, dets, None)
    sink.close(True)
    first, second = (json.loads(x) for x in path.read_text().splitlines())
    assert first["labels"] == [{"class_id": 2, "class_name": "z", "score": 0.75}, {"class_id": 0, "class_name": "x", "score": 0.125}]
    assert [d["crop_label"]["class_name"] for d in second["detections"]] == ["blue", "red"] and "labels" not in second


def test_jsonl_has_speeds_only_with_a_calibration(tmp_path):
    sink = JsonlSink(tmp_path / "d.jsonl", ["a", "b"])
    d = dets()
    sink.write(frame(0), Detections(d.xyxy, d.confidence, d.class_id, tracker_id=[3, -1]), None)
    sink.write(frame(1), Detections(d.xyxy, d.confidence, d.class_id, tracker_id=[3, -1], speed_kmh=[42.345, np.nan]), None)
    sink.close(True)
    first, second = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert all("speed_kmh" not in x for x in first["detections"])
    assert [x["speed_kmh"] for x in second["detections"]] == [42.3, None]


def heat_run(path, n=60, tracked=True, size=(360, 640)):
    """Detections walking a known path: ground points (bottom centres) along y = 200 + x / 4,
    x from 100 to 500, plus, when tracked, an unconfirmed one far off the path."""
    from pipeline.sinks import HeatmapSink

    sink = HeatmapSink(path)
    h, w = size
    for k in range(n):
        x = 100 + 400 * k / (n - 1)
        y = 200 + x / 4
        xyxy = [[x - 15, y - 50, x + 15, y], [560, 20, 600, 80]]
        ids = [1, -1] if tracked else None
        img = np.full((h, w, 3), 90, np.uint8)
        sink.write(Frame(img, k, k / 30, 0.0), Detections(xyxy, [0.9, 0.9], [0, 0], tracker_id=ids), None)
    return sink


def test_the_heatmap_mass_lies_on_the_path_the_tracks_took(tmp_path):
    out = tmp_path / "heat.png"
    sink = heat_run(out)
    sink.close(True)
    heat = np.load(tmp_path / "heat.npy", allow_pickle=False)
    assert heat.shape == (360, 640) and heat.dtype == np.float32
    assert heat.sum() == pytest.approx(60, rel=1e-3)  # one per point, the splat normalised
    yy, xx = np.nonzero(heat > heat.max() * 1e-3)
    near = np.abs(yy - (200 + xx / 4)) < 4 * 3.6 + 2  # within 4 sigma of the path (sigma: 1 % of 360 px)
    on_path = heat[yy[near], xx[near]].sum() / heat.sum()
    assert on_path > 0.99 and heat[60:90, 560:600].sum() == 0  # the unconfirmed detection does not count
    assert (100 - 20 <= xx).all() and (xx <= 500 + 20).all()
    picture = cv2.imread(str(out))
    assert picture.shape == (360, 640, 3)
    assert (picture[275, 300] != 90).any() and (picture[50, 50] == 90).all()  # coloured on the path, the frame elsewhere
    assert not partial_path(out).exists() and not partial_path(tmp_path / "heat.npy").exists()


def test_without_a_tracker_every_detection_counts(tmp_path):
    sink = heat_run(tmp_path / "h.png", tracked=False)
    sink.close(True)
    heat = np.load(tmp_path / "h.npy")
    assert heat.sum() == pytest.approx(120, rel=1e-3) and heat[60:90, 560:600].sum() > 50


def test_a_failed_run_leaves_the_heatmap_only_as_partial_files(tmp_path):
    out = tmp_path / "heat.png"
    sink = heat_run(out, n=10)
    sink.close(False)
    assert not out.exists() and not (tmp_path / "heat.npy").exists()
    assert np.load(partial_path(tmp_path / "heat.npy")).sum() == pytest.approx(10, rel=1e-3)
    assert cv2.imread(str(partial_path(out)), cv2.IMREAD_UNCHANGED) is not None or partial_path(out).stat().st_size > 0


@pytest.mark.parametrize("name, message", [("heat.jpg", "give a .png name"), ("missing/heat.png", "does not exist")])
def test_bad_heatmap_paths(tmp_path, name, message):
    from pipeline.sinks import HeatmapSink

    with pytest.raises(SinkError, match=message):
        HeatmapSink(tmp_path / name)
