import json

import numpy as np
import pytest

from pipeline.bench.phases import engine_only, make_sinks, pipelined, sample_batch, sequential
from pipeline.paths import CpuPath
from pipeline.runtime import STAGES, StageError
from pipeline.sinks import partial_path
from pipeline.sources import open_source
from tests.conftest import make_clip
from tests.fakes import FailingModel


def test_sample_batch_repeats_a_short_source(tmp_path, tiny_model):
    clip = make_clip(tmp_path / "c.mp4", frames=3)
    items = sample_batch(open_source(str(clip)), CpuPath(tiny_model), 5)
    x = [it.tensor for it in items]
    assert len(x) == 5 and x[0].shape == (3, *tiny_model.info.input_hw) and x[0].dtype == np.float32
    assert [it.frame.index for it in items] == [0, 1, 2, 0, 1] and not np.array_equal(x[0], x[1])


def test_engine_only_counts_calls_and_frames(tiny_model, clip):
    x = sample_batch(open_source(str(clip)), CpuPath(tiny_model), 2)
    done = []
    r = engine_only(CpuPath(tiny_model), x, calls=7, warmup=2, progress=done.append)
    assert (r["calls"], r["batch"], r["latency_ms"]["count"]) == (7, 2, 7)
    assert done == list(range(1, 8))
    lat = r["latency_ms"]
    assert r["fps"] == round(2 * 1000 / lat["p50_ms"], 3)  # frames per median call
    assert r["fps_wall"] <= 7 * 2 / (7 * lat["mean_ms"] / 1000) * 1.001  # the loop's wall time holds every timed call
    assert lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]


@pytest.mark.parametrize("sink, files, drawn", [("none", [], False), ("jsonl", ["s.jsonl"], False), ("video", ["s.mp4", "s.jsonl"], True)])
def test_sequential_runs_every_stage_once_a_frame(tmp_path, tiny_model, sink, files, drawn):
    clip = make_clip(tmp_path / "clip.mp4", frames=12)
    source = open_source(str(clip))
    sinks = make_sinks(sink, tmp_path, "s", source, tiny_model.info.names)
    m, usage = sequential(source, CpuPath(tiny_model), sinks, frames=100, device="cpu")
    assert (m["frames_in"], m["frames_out"], m["dropped"]) == (12, 12, 0)  # the clip ends first
    counts = {name: s["count"] for name, s in m["stages"].items()}
    assert list(counts) == list(STAGES)
    assert counts == {**dict.fromkeys(STAGES, 12), "overlay": 12 if drawn else 0}
    assert m["e2e_latency"]["count"] == m["overlay_latency"]["count"] == 12
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "clip.mp4") == sorted(files)
    if sink != "none":
        lines = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
        assert [x["index"] for x in lines] == list(range(12))
        assert m["detections_per_frame"] == round(sum(len(x["detections"]) for x in lines) / 12, 2)
    assert usage.rss_mb > 0 and usage.cores_busy >= 0


def test_sequential_stops_at_frames(tiny_model, clip):
    m, _ = sequential(open_source(str(clip)), CpuPath(tiny_model), [], frames=5, device="cpu")
    assert m["frames_out"] == 5 and m["stages"]["grab"]["count"] == 5


def test_a_failing_sequential_run_leaves_only_partial_outputs(tmp_path, tiny_model, clip):
    source = open_source(str(clip))
    sinks = make_sinks("jsonl", tmp_path, "s", source, tiny_model.info.names)
    with pytest.raises(RuntimeError, match="injected"):
        sequential(source, CpuPath(FailingModel(tiny_model, "postprocess", at_call=4)), sinks, frames=20, device="cpu")
    assert not (tmp_path / "s.jsonl").exists() and partial_path(tmp_path / "s.jsonl").exists()


def test_pipelined_matches_the_sequential_outputs(tmp_path, tiny_model, clip):
    out = {}
    for tag, run in (("seq", lambda s, sinks: sequential(s, CpuPath(tiny_model), sinks, 30, "cpu")),
                     ("pipe", lambda s, sinks: pipelined(s, CpuPath(tiny_model), sinks, 30, 1, "cpu"))):
        source = open_source(str(clip))
        m, usage = run(source, make_sinks("jsonl", tmp_path, tag, source, tiny_model.info.names))
        assert m["frames_out"] == 30 and usage.rss_mb > 0
        out[tag] = [json.loads(x)["detections"] for x in (tmp_path / f"{tag}.jsonl").read_text().splitlines()]
    assert out["seq"] == out["pipe"]  # same frames, same detections: only the scheduling differs


def test_a_failing_pipelined_run_raises_the_stage(tiny_model, clip):
    with pytest.raises(StageError, match="infer"):
        pipelined(open_source(str(clip)), CpuPath(FailingModel(tiny_model, "infer")), [], 20, 1, "cpu")


def test_the_gpu_path_measures_the_same_way(tmp_path, clip):
    """On the torch backend (CPU here) the GPU path runs all three measurements with the same outputs."""
    from pipeline.bench import choose_path
    from pipeline.loader import load_model

    model = load_model("demo", backend="torch")
    path = choose_path(model, "gpu")
    assert path.name == "gpu"
    r = engine_only(path, sample_batch(open_source(str(clip)), path, 2), calls=3, warmup=1)
    assert r["latency_ms"]["count"] == 3
    outs = {}
    for tag, run in (("seq", lambda s, sinks: sequential(s, path, sinks, 10, "cpu")),
                     ("pipe", lambda s, sinks: pipelined(s, path, sinks, 10, 2, "cpu"))):
        source = open_source(str(clip))
        m, _ = run(source, make_sinks("video", tmp_path, tag, source, model.info.names))
        assert m["frames_out"] == 10
        outs[tag] = [json.loads(x)["detections"] for x in (tmp_path / f"{tag}.jsonl").read_text().splitlines()]
    assert len(outs["seq"]) == len(outs["pipe"])
    for seq, pipe in zip(outs["seq"], outs["pipe"]):  # the same detections; torch's batch-1 and batch-2 kernels may differ in the last bits
        assert [{**d, "score": None, "xyxy": None} for d in seq] == [{**d, "score": None, "xyxy": None} for d in pipe]
        for a, b in zip(seq, pipe):
            assert a["score"] == pytest.approx(b["score"], abs=1e-4) and a["xyxy"] == pytest.approx(b["xyxy"], abs=0.05)


def test_the_gpu_path_needs_a_tensor_backend(tiny_model):
    from pipeline.bench import choose_path
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="--path gpu: the onnxruntime backend does not run on tensors"):
        choose_path(tiny_model, "gpu")
    assert choose_path(tiny_model, "auto").name == "cpu"
