"""The demo clip: --size parsing, the demo's argument checks, and a written clip with its COCO ground truth."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipeline.config import ConfigError
from pipeline.demo.clip import check_demo, parse_size, write_clip
from pipeline.demo.scenes import CLASSES, SEMANTIC
from tests.conftest import probe


@pytest.mark.parametrize(
    "text, expected, error",
    [
        ("1280x720", (1280, 720), None),
        ("64x64", (64, 64), None),
        ("7680x4320", (7680, 4320), None),
        (" 1920X1080 ", (1920, 1080), None),
        ("63x64", None, "--size 63x64"),
        ("64x62", None, "--size 64x62"),
        ("1281x720", None, "even numbers"),
        ("1280x721", None, "even numbers"),
        ("7682x4320", None, "7680x4320"),
        ("1280x4322", None, "7680x4320"),
        ("abc", None, "--size abc: give WIDTHxHEIGHT"),
        ("1280*720", None, "WIDTHxHEIGHT"),
        ("1280x720x3", None, "WIDTHxHEIGHT"),
        ("", None, "WIDTHxHEIGHT"),
    ],
)
def test_parse_size(text, expected, error):
    if error is None:
        assert parse_size(text) == expected
    else:
        with pytest.raises(ConfigError, match=error):
            parse_size(text)


def test_check_demo_refuses_no_frames_and_a_file_for_a_folder(tmp_path):
    assert check_demo(tmp_path / "new", 1, "320x240") == (320, 240)  # a folder yet to be made is fine
    assert check_demo(tmp_path, 60, "1280x720") == (1280, 720)  # and so is an existing one
    with pytest.raises(ConfigError, match="--frames 0: give at least 1 frame"):
        check_demo(tmp_path, 0, "1280x720")
    with pytest.raises(ConfigError, match="--frames -3"):
        check_demo(tmp_path, -3, "1280x720")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="--out .*file is a file: give a folder"):
        check_demo(tmp_path / "file", 5, "1280x720")
    with pytest.raises(ConfigError, match="--size 1x1"):
        check_demo(tmp_path, 5, "1x1")


def test_write_clip_writes_the_video_and_its_ground_truth(tmp_path):
    done: list[int] = []
    video, gt_path = write_clip(tmp_path / "out", seed=3, frames=5, size=(160, 96), progress=done.append)
    assert (video.name, gt_path.name) == ("clip.mp4", "ground_truth.json")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4", "crossings.json", "ground_truth.json",
                                                                    "ground_truth_mot.txt", "ground_truth_semantic"]  # no partials
    semantic = tmp_path / "out" / "ground_truth_semantic"
    assert sorted(p.name for p in semantic.iterdir()) == sorted(["classes.json"] + [f"{i:06d}.png" for i in range(5)])
    assert json.loads((semantic / "classes.json").read_text())["classes"] == list(SEMANTIC)
    from pipeline.demo.scenes import Scene

    labels = cv2.imread(str(semantic / "000004.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(labels, list(Scene(3, 160, 96).frames(5))[-1].labels)  # lossless
    assert done == [1, 2, 3, 4, 5]
    info = probe(video)
    assert info["frames"] == 5 and info["size"] == (160, 96)

    gt = json.loads(gt_path.read_text())
    assert len(gt["images"]) == 5
    assert [(im["id"], im["frame_index"], im["width"], im["height"]) for im in gt["images"]] == [(i + 1, i, 160, 96) for i in range(5)]
    assert [c["name"] for c in gt["categories"]] == list(CLASSES) and gt["info"]["seed"] == 3
    anns = gt["annotations"]
    assert anns, "the scene has objects"
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    assert {a["image_id"] for a in anns} <= {1, 2, 3, 4, 5}
    assert {a["category_id"] for a in anns} <= set(range(1, len(CLASSES) + 1))
    for a in anns:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 160 and y + h <= 96 and a["area"] > 0
        assert a["segmentation"]["size"] == [96, 160]
