"""Which files a batch job takes and the names its outputs get."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.batch.inputs import find_recordings
from pipeline.types import InputError


def touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def names(recs) -> list[str]:
    return [r.name for r in recs]


def test_folder_is_searched_recursively_for_videos_only(tmp_path):
    d = tmp_path / "rec"
    touch(d / "b.mp4", d / "a.MOV", d / "2026" / "c.mkv", d / "notes.txt", d / "frame.jpg", d / ".hidden" / "h.mp4")
    recs = find_recordings([str(d)], tmp_path / "out")
    assert names(recs) == ["a", "b", "2026/c"]  # sorted within a folder, sub-folders after its files
    assert all(r.path.is_absolute() for r in recs)


def test_output_folder_inside_the_input_folder_is_not_an_input(tmp_path):
    d = tmp_path / "rec"
    touch(d / "a.mp4", d / "results" / "a.annotated.mp4")
    assert names(find_recordings([str(d)], d / "results")) == ["a"]


def test_same_stem_gives_the_same_name(tmp_path):  # (the job refuses them: tests/batch/test_job.py)
    d = tmp_path / "rec"
    touch(d / "a.mp4", d / "a.mkv", d / "b.mp4")
    assert sorted(names(find_recordings([str(d)], tmp_path / "out"))) == ["a", "a", "b"]


def test_glob_names_are_relative_to_its_fixed_part(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(Path("rec/day1/a.mp4"), Path("rec/day2/a.mp4"), Path("rec/day2/x.txt"))
    assert names(find_recordings(["rec/day*/*"], Path("out"))) == ["day1/a", "day2/a"]
    assert names(find_recordings(["rec/**/*.mp4"], Path("out"))) == ["day1/a", "day2/a"]


def test_list_file_paths_are_relative_to_it_and_may_be_missing(tmp_path):
    touch(tmp_path / "cams" / "front" / "a.mp4", tmp_path / "cams" / "rear" / "a.mp4")
    listed = tmp_path / "cams" / "list.txt"
    listed.write_text("\ufeff# my drives\nfront/a.mp4\n\n  rear/a.mp4\nfront/gone.mp4\nfront/a.mp4\n", encoding="utf-8")  # (a BOM too)
    recs = find_recordings([f"@{listed}"], tmp_path / "out")
    assert names(recs) == ["front/a", "rear/a", "front/gone"]  # once each; a missing file is its run's failure
    assert not recs[2].path.exists()
    listed.write_text("front/a.mp4\nrear/a.mp4\n../elsewhere/b.mp4\n")  # the list grew: earlier names stay
    recs = find_recordings([f"@{listed}"], tmp_path / "out")
    assert names(recs)[:2] == ["front/a", "rear/a"]
    assert recs[2].path == tmp_path / "elsewhere" / "b.mp4" and names(recs)[2] == (tmp_path / "elsewhere" / "b").as_posix()[1:]


def test_list_entries_with_a_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    touch(tmp_path / "home" / "x.mp4")
    (tmp_path / "l.txt").write_text("~/x.mp4\n")
    assert find_recordings([f"@{tmp_path / 'l.txt'}"], tmp_path / "out")[0].path == tmp_path / "home" / "x.mp4"


def test_a_file_and_a_folder_together(tmp_path):
    touch(tmp_path / "one.mp4", tmp_path / "rec" / "two.mp4")
    assert names(find_recordings([str(tmp_path / "one.mp4"), str(tmp_path / "rec")], tmp_path / "out")) == ["one", "two"]


@pytest.mark.parametrize("spec, expected", [
    ("rtsp://cam/1", "is live, not a recording"),
    ("0", "is live, not a recording"),
    ("synthetic:640x480@30", "is live, not a recording"),
    ("EMPTY", "no recordings in"),
    ("PICTURES", "a folder of pictures is one source"),
    ("nothing-*.mp4", "no recordings match"),
    ("@missing.txt", "cannot read the list"),
    ("@EMPTYLIST", "names no recordings"),
])
def test_refused(tmp_path, monkeypatch, spec, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "EMPTY").mkdir()
    touch(tmp_path / "PICTURES" / "a.jpg")
    (tmp_path / "EMPTYLIST").write_text("# nothing\n\n")
    with pytest.raises(InputError, match=expected) as err:
        find_recordings([spec], tmp_path / "out")
    assert "\n" not in str(err.value)


def test_hidden_files_are_not_inputs(tmp_path):
    touch(tmp_path / "rec" / "a.mp4", tmp_path / "rec" / "._a.mp4")
    assert names(find_recordings([str(tmp_path / "rec")], tmp_path / "out")) == ["a"]


@pytest.mark.parametrize("out", ["rec", "."])
def test_output_folder_holding_the_recordings_is_refused(tmp_path, out):
    touch(tmp_path / "rec" / "a.mp4")
    with pytest.raises(InputError, match="inside the output folder"):
        find_recordings([str(tmp_path / "rec")], tmp_path / out)


def test_a_folder_in_a_list_is_searched(tmp_path):
    touch(tmp_path / "day1" / "a.mp4", tmp_path / "day1" / "sub" / "b.mp4", tmp_path / "c.mp4")
    (tmp_path / "l.txt").write_text("day1\nc.mp4\n")
    assert names(find_recordings([f"@{tmp_path / 'l.txt'}"], tmp_path / "out")) == ["day1/a", "day1/sub/b", "c"]
