"""The track stage in the pipeline: one tracker per source, ids independent of batching, events."""

import numpy as np
import pytest

from pipeline.analytics import parse_shapes
from pipeline.demo.scenes import Scene
from pipeline.loader import load_model
from pipeline.runtime import Pipeline
from pipeline.runtime.track import TrackStage
from pipeline.types import Detections, Frame
from tests.fakes import Frames, KeepItems

FRAMES = 24


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


@pytest.fixture(scope="module")
def clips():
    """Two different generated clips (seeds 7 and 8), 24 frames each, many objects."""
    return {seed: [r.image for r in Scene(seed).frames(FRAMES)] for seed in (7, 8)}


def run(model, clips: list, batch: int, tracker: str = "bytetrack", lines=()) -> KeepItems:
    sources = [Frames(c) for c in clips]
    sink = KeepItems()
    stage = TrackStage(tracker, {}, parse_shapes(list(lines), []), model.info.names, sources)
    Pipeline(sources, model, [sink], batch=batch, tracking=stage).run(handle_sigint=False)
    return sink


@pytest.mark.parametrize("tracker", ["bytetrack", "botsort"])
def test_ids_do_not_depend_on_the_batch_size(demo, clips, tracker):
    one, four = run(demo, [clips[7]], 1, tracker), run(demo, [clips[7]], 4, tracker)
    assert one.ids() == four.ids()
    assert len({i for row in one.ids() for i in row if i > 0}) >= 3  # several objects followed (4 measured)


def test_two_sources_batched_together_keep_their_own_tracks(demo, clips):
    """Each source's ids are what it gets alone: no track crosses from one source to the other."""
    alone = [run(demo, [clips[s]], 4).ids() for s in (7, 8)]
    together = run(demo, [clips[7], clips[8]], 4)
    assert [together.ids(0), together.ids(1)] == alone


def test_the_metrics_time_the_track_stage_and_sum_its_counts(demo, clips):
    sources = [Frames(clips[7])]
    stage = TrackStage("bytetrack", {}, parse_shapes(["mid=0,0.5,1,0.5"], []), demo.info.names, sources)
    metrics = Pipeline(sources, demo, [KeepItems()], tracking=stage).run(handle_sigint=False)
    assert list(metrics["stages"])[3:5] == ["postprocess", "track"]
    assert metrics["stages"]["track"]["count"] == FRAMES
    t = metrics["tracking"]
    assert t["tracker"] == "bytetrack" and t["tracks"][0] >= 3 and t["shapes"][0]["name"] == "mid"


def test_a_reconnect_gap_longer_than_the_memory_starts_new_tracks(demo):
    """Frames 0-9, then a 2 s gap (a stream that reconnects; its pts keep the time lost), then
    the same objects again: tracks are gone after the 1 s memory, so they get new ids."""
    ids, stage = track_times([i / 30 for i in range(10)] + [2.3 + i / 30 for i in range(5)], demo)
    assert ids[9] == [1, 2]
    assert min(ids[-1]) > 2  # new ids, never reused
    assert stage.summary()["tracks"] == [4]


def test_a_clock_that_goes_back_or_repeats_continues_the_tracks(demo):
    ids, stage = track_times([10.0, 10.033, 10.067, 0.0, 0.033, 0.033, 0.067], demo, moving=True)
    assert ids[1:] == [[1, 2]] * 6
    assert stage._clock[0] == pytest.approx(10.067 + 4 / 30, abs=1e-3)  # a frame period for each of the four frames after


@pytest.mark.parametrize("timed", [True, False])
def test_image_folders_are_tracked_as_frames_a_thirtieth_of_a_second_apart(demo, timed):
    """Images carry pts a second apart: taken as time, one picture where the detector misses the
    objects is two seconds unseen, longer than the memory, and they come back with new ids."""
    ids, _ = track_times([float(i) for i in range(8)], demo, moving=True, timed=timed, missed=(4,))
    assert ids[3] == [1, 2]
    assert (ids[-1] == [1, 2]) is not timed


def track_times(times: list[float], demo, moving: bool = False, timed: bool = True, missed=()):
    """Two boxes (static, or moving right 12 px a frame; not detected in the ``missed`` frames)
    at the given frame times through a track stage."""
    source = Frames([])
    source.timed = timed
    stage = TrackStage("bytetrack", {}, [], demo.info.names, [source])
    image = np.zeros((480, 640, 3), np.uint8)
    ids = []
    for k, pts in enumerate(times):
        dx = 12 * k if moving else 0
        boxes = Detections([[100 + dx, 100, 160 + dx, 140], [300 + dx, 300, 380 + dx, 360]], [0.9, 0.9], [0, 1])
        boxes = boxes[:0] if k in missed else boxes
        item = type("Item", (), {"frame": Frame(image, k, pts, 0.0), "detections": boxes})()
        stage.apply(item)
        ids.append(item.detections.tracker_id.tolist() if k not in missed else None)
    return ids, stage


def test_the_gpu_path_is_tracked_on_host_boxes_like_the_cpu_path(clips):
    """The GPU path (here on CPU tensors, torch backend) hands host boxes to the tracker: same ids as the CPU path."""
    pytest.importorskip("torch")
    from pipeline.paths import path_for

    model = load_model("demo", backend="torch")
    got = {}
    for name in ("cpu", "gpu"):
        sink, sources = KeepItems(), [Frames(clips[7][:12])]
        stage = TrackStage("botsort", {}, [], model.info.names, sources)
        Pipeline(sources, model, [sink], tracking=stage, path=path_for(model, name)).run(handle_sigint=False)
        got[name] = sink.ids()
    assert got["gpu"] == got["cpu"] and any(i > 0 for row in got["cpu"] for i in row)
