import pytest

from pipeline.bench.config import BenchConfig, expand, make_config, parse_sweep
from pipeline.config import ConfigError


def test_sweep_expands_to_every_combination_in_the_order_given():
    axes = parse_sweep(["batch=1,2,4", "backend=onnxruntime,torch"])
    assert axes == {"batch": ["1", "2", "4"], "backend": ["onnxruntime", "torch"]}
    configs = expand({"source": "clip.mp4", "frames": 50}, axes)
    assert [(c.batch, c.backend) for c in configs] == [(b, k) for b in (1, 2, 4) for k in ("onnxruntime", "torch")]
    assert all(c.frames == 50 and c.source == "clip.mp4" for c in configs)
    assert configs[3].label(tuple(axes)) == "batch=2 backend=torch"


@pytest.mark.parametrize("terms, message", [
    (["batch"], "write KEY=V1,V2"),
    (["batch="], "write KEY=V1,V2"),
    (["colour=red,blue"], "'colour' cannot be swept"),
    (["batch=1", "batch=2"], "given twice"),
])
def test_bad_sweep_terms_say_what_to_write(terms, message):
    with pytest.raises(ConfigError, match=message):
        parse_sweep(terms)


@pytest.mark.parametrize("values, message", [
    ({"batch": "0"}, "batch"),
    ({"backend": "fast"}, "backend"),
    ({"imgsz": "big"}, "imgsz"),
    ({"sink": "window"}, "sink"),
])
def test_bad_swept_values_fail_before_anything_runs(values, message):
    with pytest.raises(ConfigError, match=f"--sweep .*{message}"):
        expand({"source": "clip.mp4"}, {k: [v] for k, v in values.items()})


def test_defaults_and_validation():
    cfg = make_config({"source": "x.mp4", "imgsz": None})
    assert (cfg.model, cfg.backend, cfg.batch, cfg.frames, cfg.warmup, cfg.sink) == ("demo", "auto", 1, 300, 10, "jsonl")
    with pytest.raises(ConfigError, match="frames"):
        make_config({"source": "x.mp4", "frames": 0})
    with pytest.raises(ConfigError, match="device"):
        make_config({"source": "x.mp4", "device": "gpu"})
    assert BenchConfig(source="s").label() == "model=demo backend=auto batch=1"
