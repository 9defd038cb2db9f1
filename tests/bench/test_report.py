import json
import os

import pytest

from pipeline.bench import load, make_config, measure
from pipeline.bench.report import OTHERS_SHARE, bottleneck, render_report, render_sweep, stage_table
from pipeline.runtime import STAGES
from tests.conftest import make_clip
from tests.fakes import SlowModel

REQUIRED = {"engine_fps", "sequential_fps", "e2e_fps", "efficiency", "pipelining_gain", "dropped_frames", "peak_rss_mb", "stages",
            "command", "machine"}


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_model):
    clip = make_clip(tmp_path_factory.mktemp("bench") / "clip.mp4", frames=24)
    cfg = make_config({"source": str(clip), "model": "tiny-seg", "frames": 100, "warmup": 2, "batch": 2})
    return measure(cfg, tiny_model, "rtpipe bench clip.mp4")


def test_report_has_the_promised_keys_and_is_json(report):
    assert REQUIRED <= set(report)
    assert json.loads(json.dumps(report)) == report
    assert list(report["stages"]) == list(STAGES)
    for s in report["stages"].values():
        assert {"p50_ms", "p95_ms", "p99_ms"} <= set(s)
    assert report["command"] == "rtpipe bench clip.mp4" and report["machine"]["cores"] == os.cpu_count()


def test_report_is_consistent_with_itself(report):
    assert report["frames"] == report["sequential"]["frames"] == 24  # the clip is shorter than --frames
    assert report["dropped_frames"] == 0 and report["dropped_fraction"] == 0  # a file loses nothing
    assert report["efficiency"] == round(report["e2e_fps"] / report["engine_fps"], 3)
    assert report["pipelining_gain"] == round(report["e2e_fps"] / report["sequential_fps"], 3)
    assert report["e2e_fps"] == pytest.approx(24 / report["pipelined"]["wall_s"], rel=0.02)  # wall_s is rounded to ms
    assert report["engine"]["calls"] == 12 and report["engine"]["batch"] == 2  # ceil(24 / 2), at least 10
    assert report["stages"]["infer"]["calls"] == 12 and report["stages"]["grab"]["calls"] == 24
    assert report["stages"]["overlay"]["calls"] == 0  # jsonl sink: nothing drawn
    for s in [*report["stages"].values(), *report["latency_ms"].values()]:
        if s["p50_ms"] is not None:
            assert s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"]
    busy = {k: v["busy_ms_per_frame"] for k, v in report["stages"].items() if v["busy_ms_per_frame"] is not None}
    assert report["bottleneck"]["stage"] == max(busy, key=busy.get)
    assert report["peak_rss_mb"] > 50 and report["peak_gpu_mem_mb"] is None
    seq_cores = report["sequential"]["cpu_cores_busy"]
    assert report["cpu_bound_fps"] == round(os.cpu_count() * report["sequential_fps"] / seq_cores, 3)
    assert report["ceilings"]["pipelining_gain"] == round(report["cpu_bound_fps"] / report["sequential_fps"], 3)
    assert report["ceilings"]["efficiency"] <= 1
    assert report["model"]["backend"] == "onnxruntime" and report["config"]["batch"] == 2


def test_a_slow_engine_is_named_as_the_bottleneck(tmp_path, tiny_model):
    clip = make_clip(tmp_path / "clip.mp4", frames=8)
    cfg = make_config({"source": str(clip), "frames": 8, "warmup": 0, "sink": "none"})
    r = measure(cfg, SlowModel(tiny_model, 0.04), "rtpipe bench")
    assert r["bottleneck"]["stage"] == "infer" and r["bottleneck"]["limit"] != "cpu"  # sleeping takes no CPU
    b = r["bottleneck"]  # a stage, unless other programs' load is seen
    assert b["limit"] == "stage" or (b["limit"] == "machine" and b["other_cores_busy"] >= OTHERS_SHARE * b["cores"])
    assert r["stages"]["infer"]["busy_ms_per_frame"] >= 40 and r["engine"]["latency_ms"]["p50_ms"] >= 40


def test_bottleneck_rules():
    stages = {"grab": {"busy_ms_per_frame": 2.0}, "infer": {"busy_ms_per_frame": 8.0}, "overlay": {"busy_ms_per_frame": None}}
    b = bottleneck(stages, 100.0, cores_busy=1.0, cores=2)
    assert b == {"stage": "infer", "busy_ms_per_frame": 8.0, "frame_interval_ms": 10.0, "share_of_interval": 0.8,
                 "cores_busy": 1.0, "other_cores_busy": None, "cores": 2, "limit": "stage"}
    assert bottleneck(stages, 100.0, cores_busy=1.9, cores=2)["limit"] == "cpu"
    assert bottleneck({"grab": {"busy_ms_per_frame": None}}, 0.0, None, 2) is None


def test_stage_table_busy_time_is_per_frame_out():
    metrics = {"frames_out": 10, "stages": {
        "infer": {"count": 5, "mean_ms": 20.0, "p50_ms": 19.0, "p95_ms": 25.0, "p99_ms": 26.0},  # batches of 2
        "overlay": {"count": 0, "mean_ms": None, "p50_ms": None, "p95_ms": None, "p99_ms": None}}}
    t = stage_table(metrics)
    assert t["infer"]["busy_ms_per_frame"] == 10.0 and t["overlay"]["busy_ms_per_frame"] is None


def test_tables_render(report):
    from rich.console import Console

    console = Console(record=True, width=120)
    for table in render_report(report):
        console.print(table)
    console.print(render_sweep([report, report], ["a", "b"]))
    text = console.export_text()
    assert "pipelining gain" in text and "held back by" in text and "2 configurations" in text


def test_load_uses_the_configured_backend():
    m = load(make_config({"source": "x", "model": "tiny-seg", "backend": "onnxruntime"}))
    assert m.info.backend == "onnxruntime"


def _sweep_row(batch: int, dropped: int = 0, limit: str = "stage") -> dict:
    """The parts of a report ``render_sweep`` reads, with wide realistic figures."""
    return {"config": {"source": "clip.mp4", "batch": batch}, "engine_fps": 12345.6, "sequential_fps": 456.7, "e2e_fps": 7890.1,
            "efficiency": 0.639, "pipelining_gain": 17.276, "latency_ms": {"capture_to_sink": {"p50_ms": 123.4, "p95_ms": 456.7}},
            "dropped_frames": dropped, "bottleneck": {"stage": "postprocess", "limit": limit}}


def _at_80_columns(*renderables) -> list[str]:
    from rich.console import Console

    console = Console(width=80, record=True)  # what a pipe or COLUMNS=80 gets
    for r in renderables:
        console.print(r)
    return console.export_text().splitlines()


def test_sweep_table_fits_80_columns_with_every_configuration_readable():
    lines = _at_80_columns(render_sweep([_sweep_row(b) for b in (1, 2, 4)], ["batch=1", "batch=2", "batch=4"]))
    assert max(map(len, lines)) <= 80
    text = "\n".join(lines)
    for label in ("batch=1", "batch=2", "batch=4"):
        assert label in text  # not "batch…"
    assert "12345.6" in text and "7890.1" in text and "123.4/456.7" in text and "postprocess" in text and "…" not in text
    assert "dropped" not in text  # a file drops nothing: no column of zeros


def test_sweep_table_wraps_long_labels_and_shows_drops_within_80_columns():
    labels = ["model=yolo11n.pt backend=onnxruntime sink=video", "model=/models/yolo11n-seg-640x640-int8.onnx backend=aoti sink=video"]
    lines = _at_80_columns(render_sweep([_sweep_row(1, dropped=987), _sweep_row(2, limit="machine")], labels))
    assert max(map(len, lines)) <= 80 and "…" not in "\n".join(lines)
    folded = "".join(line.split()[0] for line in lines if line[:1].strip())  # the configuration column, wrapped
    assert "".join(labels[0].split()) in folded and "".join(labels[1].split()) in folded
    text = "\n".join(lines)
    assert "dropped" in text and "987" in text and "other load" in text  # a live source's drops; a busy machine named


def test_report_tables_fit_80_columns(report):
    assert max(map(len, _at_80_columns(*render_report(report)))) <= 80


@pytest.mark.parametrize("own, whole, limit, others", [
    (1.0, 1.05, "stage", 0.05),     # an idle machine: the busiest stage holds the pipeline back
    (0.38, 1.95, "machine", 1.57),  # other programs kept the cores busy: no stage is blamed
    (1.9, 1.98, "cpu", 0.08),       # this process used the cores itself
    (0.5, 1.0, "stage", 0.5),       # others ran, but cores were left idle: the stage still limits
    (0.38, None, "stage", None),    # no /proc/stat: as before
    (1.0, 0.95, "stage", 0.0),      # the two clocks disagree a little: nobody else
    (1.5, 1.7, "stage", 0.2),       # background noise beside a busy run: the stage keeps the blame
])
def test_bottleneck_takes_the_machines_load_into_account(own, whole, limit, others):
    stages = {"grab": {"busy_ms_per_frame": 9.0}, "infer": {"busy_ms_per_frame": 4.0}}
    b = bottleneck(stages, 100.0, cores_busy=own, cores=2, machine_cores_busy=whole)
    assert (b["limit"], b["other_cores_busy"]) == (limit, others)
    assert b["stage"] == "grab"  # still the stage busy longest, for the record


def test_a_busy_machine_is_said_in_the_report_and_not_blamed_on_a_stage(report):
    busy = {**report, "cpu_cores_busy": 0.38,
            "bottleneck": {**report["bottleneck"], "limit": "machine", "cores_busy": 0.38, "other_cores_busy": 1.57, "cores": 2}}
    text = "\n".join(_at_80_columns(*render_report(busy)))
    assert "busy with other work" in text and "1.57 of 2 cores used by other processes" in " ".join(text.split())
    assert "pessimistic" in text
    held = next(line for line in text.splitlines() if "held back by" in line)
    assert busy["bottleneck"]["stage"] not in held.split("│")[2]  # the verdict column names no stage
