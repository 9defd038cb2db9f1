"""``rtpipe bench``'s command line: the model is shaped by the same flags as ``rtpipe run``'s."""

import pytest
from rich.console import Console

from pipeline.cli import build_parser, cmd_bench

MODEL_FLAGS = ("--model", "--weights", "--trust-checkpoint", "--trust-engine", "--backend", "--device", "--conf", "--iou", "--imgsz",
               "--max-det", "--no-rect", "--nms", "--classes")


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return capsys.readouterr().out


def test_bench_takes_every_model_flag_run_takes(capsys):
    run, bench = _help("run", capsys), _help("bench", capsys)
    for flag in MODEL_FLAGS:
        assert flag in run and flag in bench, flag
    argv = ["--model", "demo", "--weights", "w.pth", "--trust-checkpoint", "--trust-engine", "--backend", "torch", "--device", "cpu",
            "--conf", "0.4", "--iou", "0.6", "--imgsz", "320", "--max-det", "50", "--no-rect", "--nms", "--classes", "0", "2"]
    parser = build_parser()
    as_run, as_bench = vars(parser.parse_args(["run", "x.mp4", *argv])), vars(parser.parse_args(["bench", "x.mp4", *argv]))
    shared = {"model", "weights", "trust_checkpoint", "trust_engine", "backend", "device", "conf", "iou", "imgsz", "max_det", "rect",
              "nms", "classes"}
    assert {k: as_run[k] for k in shared} == {k: as_bench[k] for k in shared}  # one definition: the same parse
    assert as_bench["rect"] is False and as_bench["classes"] == [0, 2]


@pytest.mark.parametrize("flags, mode", [([], "rect"), (["--no-rect"], "letterbox")])
def test_no_rect_reaches_the_model_bench_loads(monkeypatch, flags, mode):
    import pipeline.bench

    seen = []
    monkeypatch.setattr(pipeline.bench, "measure", lambda cfg, model, command, progress=None: seen.append((cfg, model)) or {})
    args = build_parser().parse_args(["bench", "synthetic:64x48@30?live=0&frames=2", "--model", "demo", "--backend", "torch",
                                      "--conf", "0.4", "--max-det", "7", "--quiet", *flags])
    assert cmd_bench(args, Console(quiet=True)) == 0
    (cfg, model), = seen
    assert cfg.rect is (not flags) and model.info.fit.mode == mode
    assert (cfg.conf, cfg.max_det) == (0.4, 7)
