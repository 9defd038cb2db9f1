"""The builder's frames: rendered sample inputs (seeded), calibration frames from a folder, every fourth held back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.build.options import BuildError
from pipeline.build.samples import calibration_frames, sample_inputs, split
from pipeline.types import EngineMeta, Fit

META = EngineMeta("yolo", "detect", ("a",), Fit((64, 96)), ("output0",))


def test_sample_inputs_are_fitted_float_images():
    x = sample_inputs(META, 3, seed=0)
    assert x.shape == (3, 3, 64, 96) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.std() > 0.01  # rendered scenes, not a constant
    assert not np.array_equal(x[0], x[1])  # n different scenes


def test_sample_inputs_are_deterministic_per_seed():
    np.testing.assert_array_equal(sample_inputs(META, 2, seed=4), sample_inputs(META, 2, seed=4))
    assert not np.array_equal(sample_inputs(META, 2, seed=4), sample_inputs(META, 2, seed=5))


@pytest.mark.parametrize("n, held", [(0, []), (3, []), (4, [3]), (9, [3, 7]), (24, [3, 7, 11, 15, 19, 23])])
def test_split_holds_back_every_fourth_frame(n, held):
    used, back = split(list(range(n)))
    assert back == held
    assert used == [i for i in range(n) if i not in held]


def calib_folder(path, n: int):
    """``n`` small PNGs, frame i filled with value i (BGR channels i, 2i, 3i) so that frames can be told apart."""
    path.mkdir()
    images = [np.dstack([np.full((24, 32), v, np.uint8) for v in (i, 2 * i, 3 * i)]) for i in range(n)]
    for i, im in enumerate(images):
        assert cv2.imwrite(str(path / f"{i:02d}.png"), im)
    return images


def test_calibration_frames_are_spread_over_the_folder(tmp_path):
    images = calib_folder(tmp_path / "calib", 20)
    frames = calibration_frames(str(tmp_path / "calib"), 8)
    assert len(frames) == 8
    for k, f in enumerate(frames):  # 20 images, 8 wanted: every second one, in name order, as BGR
        assert f.shape == (24, 32, 3) and f.dtype == np.uint8
        np.testing.assert_array_equal(f, images[2 * k])
    assert len(calibration_frames(str(tmp_path / "calib"), 50)) == 20  # at most what there is
    assert len(calibration_frames(str(tmp_path / "calib"), 12)) == 12  # never more than asked for


def test_calibration_needs_frames_from_a_file_like_source(tmp_path):
    with pytest.raises(BuildError, match=r"--calib .*nope: source .* not found"):
        calibration_frames(str(tmp_path / "nope"), 8)
    calib_folder(tmp_path / "few", 5)
    with pytest.raises(BuildError, match="found 5 frames, need at least 8"):
        calibration_frames(str(tmp_path / "few"), 8)
    with pytest.raises(BuildError, match="a live source cannot be calibrated on"):
        calibration_frames("synthetic:64x48@30", 8)
