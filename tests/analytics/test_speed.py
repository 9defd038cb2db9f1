"""Speed from a ground-plane homography: the calibration's rules, the estimator on noisy tracks,
and the whole measurement against a generated scene's ground truth."""

import numpy as np
import pytest

from pipeline.analytics.speed import MIN_SPAN_S, SpeedEstimator, fit_speed, ground_points, parse_calibration, to_ground
from pipeline.config import ConfigError
from pipeline.demo.scenes import CAR, Scene, Thing
from pipeline.runtime.track import TrackStage
from pipeline.types import Detections, Frame
from tests.fakes import Frames

SQUARE = "0,0,100,0,100,100,0,100=0,0,10,0,10,10,0,10"  # 10 px a metre, both axes


@pytest.mark.parametrize("text, error", [
    (SQUARE, None),
    ("0.3,0.6 0.7,0.6 0.9,1 0.1,1 = 0,30 3.5,30 3.5,5 0,5", None),   # spaces; fractions of the frame
    ("0,0,100,0,100,100,0,100=-5,-5,5,-5,5,5,-5,5", None),           # ground metres may be negative
    ("0,0,100,0,100,100,0,100", "give 4 picture points = the 4 ground points.*no '='"),
    ("0,0,100,0,100,100=0,0,10,0,10,10", "8 numbers each side; got 6 and 6"),
    ("0,0,100,0,100,100,0,100,5,5=0,0,10,0,10,10,0,10", "got 10 and 8"),
    ("0,0,a,0,100,100,0,100=0,0,10,0,10,10,0,10", "give 4 picture points"),
    ("0,0,nan,0,100,100,0,100=0,0,10,0,10,10,0,10", "finite number"),
    ("0,0,100,0,100,100,0,100=0,0,inf,0,10,10,0,10", "finite number"),
    ("0,0,100,0,-100,100,0,100=0,0,10,0,10,10,0,10", "none negative"),
    ("0,0,50,50,100,100,0,100=0,0,10,0,10,10,0,10", "three of the picture points lie on one line"),
    ("0,0,100,0,100,100,0,100=0,0,10,0,20,0,0,10", "three of the ground points lie on one line"),
    ("0,0,100,0,100,100,0,100=0,0,10,0,0,10,10,10", "not in the same order"),   # a crossed quadrilateral
])
def test_a_calibration_is_four_point_pairs_in_one_order(text, error):
    if error is None:
        cal = parse_calibration(text)
        assert len(cal.image) == len(cal.ground) == 4
        return
    with pytest.raises(ConfigError, match=error) as exc:
        parse_calibration(text)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("--calibrate")


def test_the_homography_maps_the_picture_points_to_the_ground_points_at_any_frame_size():
    cal = parse_calibration("0.25,0.5,0.75,0.5,1,1,0,1=-2,20,2,20,2,4,-2,4")
    for w, h in ((640, 360), (1920, 1080)):
        got = to_ground(cal.homography(w, h), np.array(cal.image) * [w, h])
        assert got == pytest.approx(np.array(cal.ground), abs=1e-4)
    assert ground_points(np.array([[10, 20, 30, 60]])).tolist() == [[20, 60]]


def boxes_along(path_m: np.ndarray, px_per_m: float = 10.0, jitter_px: float = 0.0, rng=None) -> np.ndarray:
    """Boxes 20x40 px standing on ground points (metres, SQUARE's 10 px a metre), edges jittered."""
    rng = rng or np.random.default_rng(0)
    x, y = path_m[:, 0] * px_per_m, path_m[:, 1] * px_per_m
    b = np.stack([x - 10, y - 40, x + 10, y], 1) + rng.normal(0, jitter_px, (len(x), 4))
    b[:, 2] = np.maximum(b[:, 2], b[:, 0])
    return b


@pytest.mark.parametrize("seed", range(5))
def test_a_jittery_track_at_constant_speed_is_measured_within_5_percent(seed):
    """2 px of box jitter (0.2 m at 10 px/m) on a 36 km/h track at 30 fps: frame-to-frame differences
    would read anywhere from 0 to ~70 km/h; the 1 s least-squares fit stays within 5 %."""
    rng = np.random.default_rng(seed)
    t = np.arange(90) / 30
    heading = rng.uniform(0, 2 * np.pi)
    path = np.array([5, 5]) + np.outer(t, 10 * np.array([np.cos(heading), np.sin(heading)]))  # 10 m/s
    boxes = boxes_along(path, jitter_px=2.0, rng=rng)
    est = SpeedEstimator(parse_calibration(SQUARE).homography(640, 480))
    got = np.array([est.update([7], boxes[k:k + 1], t[k])[0] for k in range(len(t))])
    assert np.isnan(got[t < MIN_SPAN_S - 1e-9]).all()  # no speed before half a second of history
    assert np.abs(got[t >= 1.0] / 36.0 - 1).max() < 0.05
    naive = np.hypot(*np.diff(path + rng.normal(0, 0.2, path.shape), axis=0).T) * 30 * 3.6
    assert np.abs(naive / 36.0 - 1).max() > 0.3  # what differencing frames would give


def test_untracked_detections_have_no_speed_and_tracks_are_kept_apart_and_forgotten():
    est = SpeedEstimator(parse_calibration(SQUARE).homography(640, 480))
    for k in range(31):
        t = k / 30
        boxes = boxes_along(np.array([[1 + 5 * t, 2.0], [3.0, 1 + 2 * t], [4.0, 4.0]]))  # 18 km/h, 7.2 km/h, untracked
        got = est.update([1, 2, -1], boxes, t)
    assert got[:2] == pytest.approx([18.0, 7.2], rel=1e-3) and np.isnan(got[2])
    assert len(est) == 2
    est.update([3], boxes[:1], 2.5)  # more than a window later: 1 and 2 are forgotten, their rows reused
    assert len(est) == 1 and set(est._rows) == {3}
    got = est.update([1], boxes[:1], 2.6)  # an id seen again after a window starts over
    assert np.isnan(got[0])


def test_many_tracks_at_once_grow_the_arrays_and_keep_their_own_speeds():
    est = SpeedEstimator(parse_calibration(SQUARE).homography(640, 480))
    ids = np.arange(1, 301)
    speeds = ids % 20 * 0.5  # m/s
    for k in range(20):
        t = k / 30
        path = np.stack([1 + speeds * t, np.full(len(ids), 3.0)], 1)
        got = est.update(ids, boxes_along(path), t)
    assert got == pytest.approx(speeds * 3.6, abs=1e-3)


def test_fit_speed_needs_enough_samples_and_span():
    t = np.array([[0, 0.1, 0.2, 0.3, 0.4, 0.5], [0, 0.1, 0.2, 0.3, 0.4, 0.5], [0, 0.6, 0, 0, 0, 0]])
    xy = np.stack([t * 2, t * 0], -1)
    valid = np.array([[1] * 6, [0, 0, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], bool)
    got = fit_speed(t, xy, valid, min_span_s=0.5, min_samples=2)
    assert got[0] == pytest.approx(2.0) and np.isnan(got[1]) and got[2] == pytest.approx(2.0)


def scripted_scene(width: int, height: int, car: dict, seed: int = 3) -> Scene:
    """A generated scene with one car and nothing else (no new objects spawn)."""
    scene = Scene(seed, width, height)
    scene._spawn = lambda initial=False: None
    scene.things = [Thing(100, CAR, width=1.8, height=1.5, colors=[(40, 40, 180), (90, 90, 90), (0, 0, 0)], **car)]
    return scene


def calibration_of(scene: Scene) -> str:
    """Four ground points of the scene's road (metres) and where its pinhole camera shows them:
    ``_project`` gives pixel centres, boxes are in pixel edges (a pixel spans [i, i + 1]): + 0.5."""
    ground = [(-3.0, 8.0), (3.0, 8.0), (3.0, 40.0), (-3.0, 40.0)]
    image = [(u + 0.5, v + 0.5) for u, v in (scene._project(x, z) for x, z in ground)]
    return ",".join(f"{v:.4f}" for p in image for v in p) + "=" + ",".join(f"{v:g}" for p in ground for v in p)


@pytest.mark.parametrize("car", [
    dict(x=0.2, z=9.0, vx=0.3, vz=5.0),      # pulling away in our lane, drifting right: 18 km/h relative
    dict(x=3.5, z=32.0, vx=-0.5, vz=-6.0),   # oncoming in the next lane, moving over: 21.7 km/h relative
])
def test_a_car_in_a_generated_scene_is_measured_within_10_percent_of_its_true_speed(car):
    """The generator's pinhole camera makes the calibration (exact picture points of four ground
    points); the car's rendered boxes (its visible mask's box, as a detector would see it) go
    through the track stage (bytetrack, the stage's clock) for 3 s at 30 fps."""
    pytest.importorskip("trackers")
    scene = scripted_scene(960, 540, car)
    truth = np.hypot(car["vx"], car["vz"]) * 3.6
    stage = TrackStage("bytetrack", {}, [], ("car",), [Frames([])], parse_calibration(calibration_of(scene)))
    got = []
    for k, r in enumerate(scene.frames(90)):
        boxes = np.array([i.box for i in r.instances], np.float32).reshape(-1, 4)
        item = type("Item", (), {"frame": Frame(r.image, k, k / 30, 0.0), "detections": Detections(boxes, [0.9] * len(boxes),
                                                                                                    [0] * len(boxes))})()
        stage.apply(item)
        assert len(item.detections) == 1
        got.append(float(item.detections.speed_kmh[0]))
    got = np.array(got)
    assert np.isnan(got[0]) and not np.isnan(got[30:]).any()
    assert np.abs(got[30:] / truth - 1).max() < 0.10, (truth, got[30::10])
    assert stage.summary()["calibration"]["ground_m"][2] == [3.0, 40.0]
