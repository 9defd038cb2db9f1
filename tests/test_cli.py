"""The command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline.cli import build_parser
from tests.conftest import Publisher, make_clip, needs_ffmpeg, needs_rtsp_server, open_when_up, probe, spread_scores


def rtpipe(*args, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kw)


def test_run_writes_video_and_jsonl_matching_the_input(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=45, size=(320, 240), fps=25)
    out, js, mj = tmp_path / "out.mp4", tmp_path / "out.jsonl", tmp_path / "m.json"
    r = rtpipe("run", clip, "--model", "tiny-seg", "--save", out, "--json", js, "--metrics-json", mj, "--batch", 2)
    assert r.returncode == 0, r.stderr
    assert probe(out) == probe(clip) == {"frames": 45, "fps": 25, "size": (320, 240)}
    lines = [json.loads(x) for x in js.read_text().splitlines()]
    assert [x["index"] for x in lines] == list(range(45))
    assert lines[1]["pts"] == pytest.approx(0.04)
    metrics = json.loads(mj.read_text())
    assert metrics["frames_out"] == 45 and metrics["dropped"] == 0 and metrics["batch"] == 2
    assert {"p50_ms", "p95_ms", "p99_ms"} <= set(metrics["stages"]["infer"])
    assert "end to end" in r.stdout  # the summary table
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "synthetic:64x48@30", "--iou", "1.5"], "error: --iou: Input should be less than or equal to 1 (got 1.5)"),
        (["run", "missing.mp4"], "source 'missing.mp4' not found"),
        (["run", "synthetic:64x48@30", "--model", "nope.onnx"], "model 'nope.onnx' not found"),
        (["run", "synthetic:64x48@30", "--save", "no/such/dir/o.mp4"], "does not exist"),
        (["run", "synthetic:64x48@30", "--token", ""], "--token: "),
        (["run"], "no source"),
        (["run", "synthetic:64x48@30", "--config", "nope.yaml"], "config file 'nope.yaml' not found"),
        (["run", "synthetic:64x48@30", "--model", "torchvision:ssd300_vgg16"], "needs --weights"),
        (["run", "synthetic:64x48@30", "--model", "torchvision:ssd300_vgg16", "--weights", "w.pth"], "weights file 'w.pth' not found"),
        (["run", "synthetic:64x48@30", "--model", "torchvision:ssd300", "--weights", "random"], "unknown torchvision architecture"),
        (["run", "synthetic:64x48@30", "--device", "gpu"], "--device: "),
        (["run", "synthetic:64x48@30", "--stall-timeout", "0"], "--stall-timeout: "),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    r = rtpipe(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["run", "x.mp4", "--conf", "abc"], ["run", "x.mp4", "--nope"], ["bench"], ["frobnicate"]])
def test_argument_errors_are_one_line_too(args):
    r = rtpipe(*args)
    assert r.returncode == 2
    assert r.stderr.startswith("rtpipe: error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr



def test_output_equal_to_input_is_refused(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=3)
    r = rtpipe("run", clip, "--save", clip)
    assert r.returncode == 2 and "is the input file" in r.stderr
    assert probe(clip)["frames"] == 3


def test_debug_shows_traceback():
    r = rtpipe("run", "synthetic:64x48@30", "--iou", "1.5", "--debug")
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_a_bad_value_names_the_flag_it_was_given_with_or_the_preset_key():
    r = rtpipe("run", "synthetic:64x48@30", "--conf", "2")
    assert r.returncode == 2 and r.stderr == "rtpipe: error: --conf: Input should be less than or equal to 1 (got 2.0)\n", r.stderr


def test_a_bad_value_from_a_preset_names_its_key(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("conf: 2\n")
    r = rtpipe("run", "synthetic:64x48@30", "--config", preset)
    assert r.returncode == 2 and f"error: {preset}: key 'conf': " in r.stderr and "--conf" not in r.stderr, r.stderr


def test_results_go_to_stdout_progress_warnings_and_errors_to_stderr(tmp_path):
    js = tmp_path / "d.jsonl"
    r = rtpipe("run", "synthetic:320x240@30?live=0&frames=5", "--model", "tiny-seg", "--json", js)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr  # (the progress display, off a terminal, leaves a newline)
    assert "end to end" in r.stdout and f"detections: {js}" in r.stdout  # the metrics table and what was written
    r = rtpipe("run", "missing.mp4")
    assert r.returncode == 2 and r.stdout == "" and "not found" in r.stderr


def test_info_takes_a_builtin_by_the_name_run_takes_and_says_how_frames_are_padded():
    wide = {**os.environ, "COLUMNS": "300"}  # table rows on one line each
    r = rtpipe("info", "demo", env=wide)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "demo-seg.onnx" in r.stdout and "runs here" in r.stdout
    assert "letterboxed (aspect kept, padded with grey 114)" in r.stdout and "pad grey 114" in r.stdout  # as preprocessing pads
    assert "grey bars" not in r.stdout and "pad_rgb" not in r.stdout  # (the letterbox does not use the fit's pad_rgb)
    r = rtpipe("info", "tiny-seg", env=wide)  # a builtin with no sidecar: what its metadata says
    assert r.returncode == 0 and "tiny-yoloseg.onnx" in r.stdout and "padded with grey 114" in r.stdout, r.stderr
    assert "not made by rtpipe build" in r.stdout
    r = rtpipe("info", "tiny-seg", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["model"]["names"] == ["car", "pedestrian", "cyclist", "sign"]


def test_a_file_that_is_not_video_is_named_once_with_what_is_wrong_and_no_errno(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8)))
    r = rtpipe("run", "clip.mp4", "--model", "tiny-seg", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.count("clip.mp4") == 1 and "Errno" not in r.stderr and "not a video file FFmpeg can read" in r.stderr
    assert "check it with ffprobe" in r.stderr


def test_opencv_log_lines_are_shown_only_with_debug():
    r = rtpipe("run", "99")  # no camera 99: OpenCV logs two [ WARN:0@...] lines of its own
    assert r.returncode == 2 and r.stderr.startswith("rtpipe: error: cannot open camera '99'"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = rtpipe("run", "99", "--debug")
    assert r.returncode == 2 and "[ WARN" in r.stderr


@pytest.fixture
def native_logging_restored(monkeypatch):
    """main() sets OpenCV's, FFmpeg's and the image decoders' logging for the process: as it was, after."""
    import av.logging
    import cv2

    import pipeline.sources as sources

    monkeypatch.setattr(sources, "HIDE_DECODER_MESSAGES", sources.HIDE_DECODER_MESSAGES)
    levels = cv2.utils.logging.getLogLevel(), av.logging.get_level()
    yield
    cv2.utils.logging.setLogLevel(levels[0])
    av.logging.set_level(levels[1])


def test_damaged_images_are_one_rtpipe_line_without_the_decoders_own_unless_debug(tmp_path, capfd, native_logging_restored):
    from pipeline.cli import main
    from tests.fakes import cut_images

    cut_images(tmp_path)  # a.jpg decodes (with a libjpeg warning), b.png does not (a libpng error)
    assert main(["run", str(tmp_path), "--model", "tiny-seg", "--quiet"]) == 0
    err = capfd.readouterr().err
    assert err == (f"rtpipe: warning: 1 unreadable image(s) skipped in '{tmp_path}': b.png\n"
                   f"rtpipe: warning: 1 damaged image(s) in '{tmp_path}' processed as far as they decoded (their decoder reported "
                   "errors): a.jpg\n"), err
    assert main(["run", str(tmp_path), "--model", "tiny-seg", "--quiet", "--debug"]) == 0
    err = capfd.readouterr().err
    assert "Premature end of JPEG file" in err and "libpng error" in err and "unreadable image(s) skipped" in err


def _bad_prototypes_model(path):
    """A yolo-seg layout whose prototypes have 16 channels for 32 mask coefficients: it loads
    (the prototype channel count is not checked up front) and mask assembly fails on frames."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shapes = {"s0": [1, 40, 480], "s1": [1, 16, 30, 40]}  # 1x3x80x80 = 19200 values each way
    box = np.zeros((1, 40, 1), np.float32)
    box[0, :4, 0] = (40, 40, 20, 20)  # every candidate: a 20x20 box in the middle of the input
    nodes = [helper.make_node("Reshape", ["images", "s0"], ["flat0"]), helper.make_node("Add", ["flat0", "box"], ["output0"]),
             helper.make_node("Reshape", ["images", "s1"], ["output1"])]
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in shapes.items()] + [numpy_helper.from_array(box, "box")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 80, 80])],
        [helper.make_tensor_value_info(f"output{i}", TensorProto.FLOAT, v) for i, v in enumerate(shapes.values())], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in {"names": "{0:'a',1:'b',2:'c',3:'d'}", "task": "segment"}.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, str(path))
    return path


def test_failing_stage_exits_1_naming_it_and_keeps_only_partial(tmp_path):
    model = _bad_prototypes_model(tmp_path / "bad.onnx")
    out = tmp_path / "o.mp4"
    t0 = time.monotonic()
    r = rtpipe("run", "synthetic:64x48@30?live=0&frames=100000", "--model", model, "--save", out)
    assert r.returncode == 1, r.stderr
    assert "stage 'postprocess' failed" in r.stderr
    assert not out.exists()
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("sig, code, source", [
    ("SIGINT", 130, "file"), ("SIGTERM", 143, "file"), ("SIGTERM", 143, "live"), ("SIGHUP", 129, "live")])
def test_a_stop_signal_leaves_playable_outputs_of_the_frames_done_and_the_metrics(tmp_path, sig, code, source):
    """Ctrl-C, `docker stop` / systemd (SIGTERM) and a closed terminal (SIGHUP) drain the run:
    the video and the JSONL hold the same frames, the metrics are written and say which signal."""
    if source == "file":
        uri = str(make_clip(tmp_path / "long.mp4", frames=1500, size=(320, 240), fps=30))
    else:
        uri = "synthetic:320x240@30"
    out, js, mj = tmp_path / "o.mp4", tmp_path / "o.jsonl", tmp_path / "m.json"
    p = subprocess.Popen([sys.executable, "-m", "pipeline", "run", uri, "--save", str(out), "--json", str(js),
                          "--metrics-json", str(mj)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    partial = tmp_path / "o.jsonl.partial"
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 2000):
        time.sleep(0.05)
    p.send_signal(getattr(signal, sig))
    shown, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert "interrupted" in err and "end to end" in shown  # the one line (stderr), and the table (stdout)
    done = probe(out)["frames"]
    lines = js.read_text().splitlines()
    assert 0 < done and len(lines) == done
    if source == "file":
        assert done < 1500 and [json.loads(x)["index"] for x in lines] == list(range(done))
    metrics = json.loads(mj.read_text())
    assert metrics["interrupted"] and metrics["signal"] == sig and metrics["frames_out"] == done


@pytest.mark.parametrize("sig, gap_ms", [("SIGTERM", g) for g in (0, 10, 20, 30, 40, 60, 100, 150, 200, 300)] + [("SIGINT", 30)])
def test_a_second_signal_at_any_moment_aborts_with_the_first_ones_code(tmp_path, sig, gap_ms):
    """A second signal ``gap_ms`` after the first, whatever the run is doing by then (draining,
    finalising the video, writing the metrics, printing): the exit code is the first signal's,
    the last line says what happened, the metrics are written, and every output is either
    finalised or kept as .partial, never lost (before: 130 instead of 143, killed by the
    signal itself with no metrics and a 48-byte .partial, or the last line cut)."""
    out, js, mj = tmp_path / "o.mp4", tmp_path / "o.jsonl", tmp_path / "m.json"
    p = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "synthetic:640x360@30", "--model", "tiny-seg", "--save", str(out),
                          "--json", str(js), "--metrics-json", str(mj)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial, deadline = tmp_path / "o.jsonl.partial", time.monotonic() + 60
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 2000):
        time.sleep(0.02)
    p.send_signal(getattr(signal, sig))
    time.sleep(gap_ms / 1000)
    p.send_signal(getattr(signal, sig))
    _, err = p.communicate(timeout=60)
    assert p.returncode == {"SIGINT": 130, "SIGTERM": 143}[sig], err
    last = err.strip().splitlines()[-1].removeprefix("rtpipe: ")
    metrics = json.loads(mj.read_text())
    assert metrics["signal"] == sig and metrics["interrupted"]
    for path in (out, js):  # one of the two, whole
        assert path.exists() != (tmp_path / f"{path.name}.partial").exists(), (path, last)
    by = "" if sig == "SIGINT" else " by SIGTERM"
    if metrics["aborted"]:
        assert last.startswith(f"aborted{by} (a second signal) after"), last
        assert not (out.exists() and js.exists())
    else:  # the second came once the outputs were finalised (or, sent at once, merged with the first by the kernel)
        assert last.startswith(f"interrupted{by} after {metrics['frames_out']} frames"), last
        assert len(js.read_text().splitlines()) == metrics["frames_out"] == probe(out)["frames"]


@pytest.mark.parametrize("sig, flags", [("SIGINT", []), ("SIGINT", ["--reconnect", "0", "--stall-timeout", "20"]),
                                        ("SIGTERM", [])])
def test_a_stop_while_a_stream_is_first_opening_ends_the_run_at_once_with_its_metrics(tmp_path, sig, flags):
    """The server sends its 200 headers and then nothing. A stop while rtpipe waits for the
    first bytes ends the run at once, with the signal's code and the metrics (before: ignored
    until the open timed out; 36 s, exit 1; with --reconnect 0 exit 2 after 18.5 s; SIGTERM
    killed the process with no metrics)."""
    from tests.conftest import SilentServer

    mj = tmp_path / "m.json"
    with SilentServer() as server:
        p = subprocess.Popen([sys.executable, "-m", "pipeline", "run", server.url, "--model", "tiny-seg", "--metrics-json", str(mj),
                              *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not server.held:
            time.sleep(0.02)
        time.sleep(0.5)  # well into the wait for the first bytes
        t0 = time.monotonic()
        p.send_signal(getattr(signal, sig))
        _, err = p.communicate(timeout=60)
        took = time.monotonic() - t0
    assert p.returncode == {"SIGINT": 130, "SIGTERM": 143}[sig], err
    assert took < 5, took  # at once (< 1 s here), plus the interpreter's exit
    metrics = json.loads(mj.read_text())
    assert metrics["interrupted"] and metrics["signal"] == sig and metrics["frames_out"] == 0
    assert "interrupted" in err.strip().splitlines()[-1]


def test_outside_a_run_a_stop_signal_ends_the_command_with_its_code_and_after_it_none_kills_it():
    """The program owns the stop signals for its whole life: one that comes while a command starts
    or between a demo's runs ends it with the signal's code and one line (before: ignored after the
    first run, or a kill with no message); once the command is over they are ignored."""
    script = (
        "import os, signal, sys, time\n"
        "from pipeline import cli\n"
        "def command(args, console):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "    return 0\n"
        "cli.cmd_run = command\n"
        "sys.argv = ['rtpipe', 'run', 'synthetic:64x48@30']\n"
        "code = cli.main()\n"
        "assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "sys.exit(code)\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 143 and r.stderr == "rtpipe: stopped by SIGTERM\n", r.stderr
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("quiet", [[], ["--quiet"]])
def test_a_hang_up_with_the_terminal_gone_still_exits_129_with_the_outputs_finalised(tmp_path, quiet):
    """The terminal closes (its writes then fail with EIO) and SIGHUP comes: the run drains, the
    outputs and metrics are finalised and the exit code is still 129 (before: 1, from the write)."""
    import pty

    master, terminal = pty.openpty()
    out, js, mj = tmp_path / "o.mp4", tmp_path / "o.jsonl", tmp_path / "m.json"
    p = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "synthetic:160x120@15", "--model", "tiny-seg", "--save", str(out),
                          "--json", str(js), "--metrics-json", str(mj), *quiet], stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    os.set_blocking(master, False)
    partial, deadline = tmp_path / "o.jsonl.partial", time.monotonic() + 60
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 500):
        try:
            os.read(master, 65536)  # (keep the terminal's buffer from filling)
        except OSError:
            pass
        time.sleep(0.05)
    os.close(master)  # the terminal is gone
    p.send_signal(signal.SIGHUP)
    assert p.wait(timeout=60) == 129
    metrics = json.loads(mj.read_text())
    assert metrics["signal"] == "SIGHUP" and len(js.read_text().splitlines()) == metrics["frames_out"] == probe(out)["frames"]


def test_version_and_what_new_users_type_first():
    r = rtpipe("--version")
    assert r.returncode == 0 and r.stdout.strip().startswith("rtpipe 0.")
    r = rtpipe("run", "synthetic:64x48@30", "--device", "0")
    assert r.returncode == 2 and "write cuda:0 for GPU 0, or cpu" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = rtpipe("run", "synthetic:64x48@30", "--token", "abc")
    assert r.returncode == 2 and "token is for the browser view: add --serve" in r.stderr


def test_help_documents_every_flag():
    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for flag in ("--model", "--backend", "--conf", "--iou", "--imgsz", "--batch", "--save", "--json", "--show",
                 "--serve", "--metrics-json", "--config", "--frames", "--hud", "--track", "--line", "--zone", "--events", "--trails",
                 "--calibrate", "--heatmap"):
        assert flag in text
    r = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "run" in r.stdout


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "rtpipe")
    r = subprocess.run([exe, "run", "synthetic:64x48@30?live=0&frames=3", "--quiet"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


MODELS = [
    ("torchvision:ssdlite320_mobilenet_v3_large", "torchvision"),
    (os.path.join(os.path.dirname(__file__), "data", "yolo11n-seg-320.onnx"), "yolo"),
]


@pytest.mark.parametrize("spec, family", MODELS)
def test_run_other_model_families(tmp_path, spec, family):
    """torchvision with a state_dict file, and Ultralytics' own ONNX export: video and JSONL."""
    clip = make_clip(tmp_path / "clip.mp4", frames=8, size=(320, 240), fps=25)
    out, js = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    extra = []
    if family == "torchvision":
        import torch

        from pipeline.models import torchvision as tvf

        model = tvf.build("ssdlite320_mobilenet_v3_large")
        spread_scores(model, gain=2.0)  # MobileNet's features vanish at gain 1
        torch.save(model.state_dict(), tmp_path / "w.pth")
        extra = ["--weights", tmp_path / "w.pth", "--conf", "0.5"]
    r = rtpipe("run", clip, "--model", spec, *extra, "--save", out, "--json", js, "--quiet", timeout=300)
    assert r.returncode == 0, r.stderr
    assert probe(out)["frames"] == 8
    lines = [json.loads(x) for x in js.read_text().splitlines()]
    assert len(lines) == 8
    dets = [d for line in lines for d in line["detections"]]
    assert dets, "no detections to check the output format with"
    assert all(len(d["xyxy"]) == 4 for d in dets)
    if family == "yolo":
        assert all("mask" in d for d in dets)


def test_run_a_semantic_model_on_a_portrait_clip(tmp_path):
    """A semantic model (LR-ASPP) on a portrait clip: a tinted video of the clip's frames, one
    JSONL line per frame whose class map covers the frame; with --track and a counting line (no
    boxes to follow: nothing counted, no failure)."""
    import torch

    from pipeline.models import semantic

    net = semantic.build("lraspp_mobilenet_v3_large")
    spread_scores(net, seed=2)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    clip = make_clip(tmp_path / "clip.mp4", frames=6, size=(180, 320), fps=25)
    out, js = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    r = rtpipe("run", clip, "--model", "torchvision:lraspp_mobilenet_v3_large", "--weights", tmp_path / "w.pth", "--imgsz", 96,
               "--save", out, "--json", js, "--track", "bytetrack", "--line", "0,0.5,1,0.5", "--quiet", timeout=300)
    assert r.returncode == 0, r.stderr
    assert probe(out)["frames"] == 6
    lines = [json.loads(x) for x in js.read_text().splitlines()]
    assert len(lines) == 6 and all(line["detections"] == [] for line in lines)
    for line in lines:
        cmap = line["class_map"]
        assert cmap["size"] == [320, 180] and sum(c["area"] for c in cmap["classes"]) == 320 * 180
    assert len({c["class_id"] for line in lines for c in line["class_map"]["classes"]}) >= 2


def test_run_with_a_crop_classifier_and_with_a_frame_classifier(tmp_path):
    """--classify-crops: every detection has the classifier's label of its crop, and the metrics a
    classify stage; a classifier as the model: each line has the frame's top-5; mistakes are one line."""
    clip = make_clip(tmp_path / "clip.mp4", frames=4, size=(320, 240), fps=25)
    js, metrics = tmp_path / "crops.jsonl", tmp_path / "m.json"
    r = rtpipe("run", clip, "--classify-crops", "torchvision:mobilenet_v3_small", "--classify-weights", "random",
               "--json", js, "--metrics-json", metrics, "--save", tmp_path / "crops.mp4", "--quiet", timeout=300)
    assert r.returncode == 0, r.stderr
    dets = [d for line in js.read_text().splitlines() for d in json.loads(line)["detections"]]
    assert dets and all(set(d["crop_label"]) == {"class_id", "class_name", "score"} for d in dets)
    stages = json.loads(metrics.read_text())["stages"]
    assert stages["classify"]["count"] == 4
    js2 = tmp_path / "frames.jsonl"
    r = rtpipe("run", clip, "--model", "torchvision:resnet18", "--weights", "random", "--json", js2, "--save", tmp_path / "f.mp4",
               "--quiet", timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in js2.read_text().splitlines()]
    assert len(lines) == 4 and all(len(line["labels"]) == 5 and line["detections"] == [] for line in lines)
    for args, message in ((["--classify-crops", "torchvision:resnet18"], "needs --classify-weights"),
                          (["--classify-crops", "tiny-seg"], "needs a classification model"),
                          (["--classify-weights", "random"], "add --classify-crops SPEC")):
        r = rtpipe("run", clip, *args, "--quiet")
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_pickled_checkpoint_is_refused_without_trust(tmp_path):
    import torch

    torch.save({"model": build_parser}, tmp_path / "m.pt")  # any pickled object
    r = rtpipe("run", "synthetic:64x48@30", "--model", tmp_path / "m.pt")
    assert r.returncode == 2 and "--trust-checkpoint" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bench_writes_report_and_plot(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=20)
    r = rtpipe("bench", clip, "--model", "tiny-seg", "--frames", 15, "--warmup", 1, "--sink", "video",
               "--json", tmp_path / "r.json", "--plot", tmp_path / "p.png")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"] == 15 and report["config"]["sink"] == "video" and report["stages"]["overlay"]["calls"] == 15
    assert report["command"].startswith("rtpipe bench ") and "--sink video" in report["command"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert "pipelining gain" in r.stdout and "held back by" in r.stdout  # results on stdout
    assert "pipelining gain" not in r.stderr


def test_bench_sweep_measures_every_configuration(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=10)
    r = rtpipe("bench", clip, "--model", "tiny-seg", "--frames", 10, "--warmup", 0, "--sweep", "batch=1,2", "sink=none,jsonl",
               "--json", tmp_path / "r.json", "--quiet")
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["sweep"] == {"batch": ["1", "2"], "sink": ["none", "jsonl"]}
    assert [c["label"] for c in out["configs"]] == ["batch=1 sink=none", "batch=1 sink=jsonl", "batch=2 sink=none", "batch=2 sink=jsonl"]
    assert [(c["config"]["batch"], c["engine"]["batch"]) for c in out["configs"]] == [(1, 1), (1, 1), (2, 2), (2, 2)]
    assert all(c["frames"] == 10 for c in out["configs"])


@pytest.mark.parametrize("args, message", [
    (["--sweep", "batch=1,x"], "--sweep batch=x: key 'batch'"),
    (["--sweep", "speed=1,2"], "'speed' cannot be swept"),
    (["--model", "nope.onnx"], "model 'nope.onnx' not found"),
    (["--frames", "0"], "--frames: "),
    (["--conf", "2", "--sweep", "batch=1,2"], "--conf: "),  # a bad flag is not blamed on the sweep
    (["--json", "missing/r.json"], "give a file name in an existing folder"),
    (["--backend", "aoti", "--model", "tiny-seg"], "aoti"),
])
def test_bench_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    clip = make_clip(tmp_path / "clip.mp4", frames=5)
    r = rtpipe("bench", clip, "--frames", 5, *args, "--json", tmp_path / "r.json", cwd=tmp_path) if "--json" not in args else \
        rtpipe("bench", clip, "--frames", 5, *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "r.json").exists()


def test_bench_bad_source_is_one_line(tmp_path):
    r = rtpipe("bench", tmp_path / "none.mp4", "--model", "tiny-seg")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("kind", [pytest.param("tcp", marks=needs_ffmpeg), pytest.param("rtsp", marks=needs_rtsp_server)])
def test_run_keeps_going_through_a_dropped_stream_and_reports_the_gap(tmp_path, kind):
    """The publisher (tcp) or the RTSP server and its publisher (rtsp) die mid-run and come back a second later."""
    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(96, 64), fps=25)
    js, mj = tmp_path / "out.jsonl", tmp_path / "m.json"
    with Publisher(clip, kind) as pub:
        open_when_up(pub.url, reconnect=0).frames().close()  # wait until it is up
        if kind == "tcp":  # ffmpeg -listen serves one client: start it again for rtpipe
            pub.kill()
            pub.start()
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", pub.url, "--model", "tiny-seg", "--frames", "90",
                                 "--reconnect", "20", "--json", str(js), "--metrics-json", str(mj), "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (tmp_path / "out.jsonl.partial").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the first frame is through
        pub.kill()
        pub.kill_server()
        time.sleep(1.0)
        pub.start()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    m = json.loads(mj.read_text())
    assert m["frames_in"] == 90 and len(m["source"]["gaps"]) == 1 and m["source"]["gap_s"] > 0.5
    indices = [json.loads(x)["index"] for x in js.read_text().splitlines()]
    assert len(indices) == m["frames_out"] == 90 - m["dropped"] and indices == sorted(set(indices)) and indices[-1] == 89


def test_run_on_a_damaged_file_skips_what_does_not_decode_and_finishes_valid_outputs(tmp_path):
    from tests.test_sources import _damage

    clip = make_clip(tmp_path / "c.mp4", frames=60, size=(160, 120))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(_damage(clip.read_bytes()))
    out, mj = tmp_path / "out.mp4", tmp_path / "m.json"
    r = rtpipe("run", bad, "--model", "tiny-seg", "--save", out, "--metrics-json", mj)
    assert r.returncode == 0, r.stderr
    m = json.loads(mj.read_text())
    assert m["source"]["corrupt_packets"] > 0 and 0 < m["frames_out"] < 60
    assert probe(out)["frames"] == m["frames_out"]  # a valid, complete file of what was read
    assert "damaged packet(s) skipped" in r.stderr


def test_run_on_a_truncated_faststart_mp4_finishes_what_it_has_and_says_what_it_lacked(tmp_path):
    from tests.test_sources import faststart

    whole = faststart(make_clip(tmp_path / "c.mp4", frames=60, size=(160, 120)), tmp_path / "fast.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    js, mj = tmp_path / "o.jsonl", tmp_path / "m.json"
    r = rtpipe("run", cut, "--model", "tiny-seg", "--json", js, "--metrics-json", mj)
    assert r.returncode == 0, r.stderr  # completed, on what the file had (documented in README "Faults")
    m = json.loads(mj.read_text())
    n = len(js.read_text().splitlines())
    assert 5 < n == m["frames_out"] < 60 and m["source"]["missing_frames"] == 60 - n
    assert f"ended after {n} of the 60 frames it declares" in r.stderr


def test_run_on_a_file_that_is_not_video_is_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 100)
    r = rtpipe("run", bad, "--model", "tiny-seg", "--save", tmp_path / "o.mp4", "--json", tmp_path / "o.jsonl")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "not a video" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4"]


def test_unwritable_output_is_refused_before_the_run():
    r = rtpipe("run", "synthetic:64x48@30?live=0&frames=3", "--model", "tiny-seg", "--json", "/proc/rtpipe-out.jsonl")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "/proc" in r.stderr and ("choose another output folder" in r.stderr or "not writable" in r.stderr)


def test_a_full_disk_fails_the_run_and_leaves_nothing_that_looks_complete(tmp_path, monkeypatch, capsys):
    import errno

    from pipeline import cli
    from pipeline.sinks import JsonlSink

    real = JsonlSink.write

    def write(self, frame, detections, image):
        if frame.index == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, frame, detections, image)

    monkeypatch.setattr(JsonlSink, "write", write)
    clip = make_clip(tmp_path / "c.mp4", frames=20)
    code = cli.main(["run", str(clip), "--model", "tiny-seg", "--json", str(tmp_path / "o.jsonl"), "--save", str(tmp_path / "o.mp4"),
                     "--metrics-json", str(tmp_path / "m.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.mp4").exists()
    assert (tmp_path / "o.jsonl.partial").exists() and "partial outputs kept" in err
    metrics = json.loads((tmp_path / "m.json").read_text())  # written whatever ends the run, with the error
    assert "No space left on device" in metrics["error"] and metrics["frames_out"] < 20


def test_metrics_that_cannot_be_written_are_one_line_and_leave_no_file(tmp_path, monkeypatch, capsys):
    import errno

    from pipeline import cli
    from pipeline.runtime import session

    def full(path, text):
        session.partial_path(path).write_text("")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(session, "write_complete", full)
    clip = make_clip(tmp_path / "c.mp4", frames=5)
    code = cli.main(["run", str(clip), "--model", "tiny-seg", "--metrics-json", str(tmp_path / "m.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write the metrics to" in err and "No space left" in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("m.json*"))


@pytest.mark.parametrize("yaml_text, key", [("iou: 1.5\n", "iou"), ("reconect: 5\n", "reconect"), ("reconnect: -1\n", "reconnect"),
                                            ("batch: [1]\n", "batch")])
def test_bad_preset_is_one_line_naming_file_and_key(tmp_path, yaml_text, key):
    preset = tmp_path / "my.yaml"
    preset.write_text(yaml_text)
    r = rtpipe("run", "synthetic:64x48@30", "--config", preset)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(preset) in r.stderr and f"'{key}'" in r.stderr and "Traceback" not in r.stderr
    r = rtpipe("run", "synthetic:64x48@30", "--config", preset, "--debug")
    assert r.returncode == 2 and "Traceback" in r.stdout + r.stderr


@needs_ffmpeg
def test_several_sources_one_dies_the_others_finish(tmp_path):
    """A TCP stream that dies for good (--reconnect 1) next to a live synthetic source: the
    synthetic source's outputs are complete, the stream's kept as .partial, exit 1 naming it."""
    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(96, 64), fps=25)
    js = tmp_path / "out.jsonl"
    with Publisher(clip, "tcp") as pub:
        open_when_up(pub.url, reconnect=0).frames().close()
        pub.kill()
        pub.start()
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", pub.url, "synthetic:96x64@30?frames=120", "--model", "tiny-seg",
                                 "--reconnect", "1", "--batch", "2", "--json", str(js), "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (tmp_path / "out-0.jsonl.partial").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        pub.kill()  # and never back
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    *down, last = err.strip().splitlines()
    assert "source 0 (tcp://" in last and "did not come back" in last and "out-0.jsonl.partial" in last
    assert len(down) == 1 and "is down after frame" in down[0]  # the one line when it went down
    synthetic = [json.loads(x)["index"] for x in (tmp_path / "out-1.jsonl").read_text().splitlines()]
    assert synthetic == sorted(set(synthetic)) and synthetic[-1] == 119 and len(synthetic) >= 110
    assert (tmp_path / "out-0.jsonl.partial").exists() and not (tmp_path / "out-0.jsonl").exists()


def test_several_file_sources_write_one_output_each(tmp_path):
    a, b = make_clip(tmp_path / "a.mp4", frames=12), make_clip(tmp_path / "b.mp4", frames=7)
    r = rtpipe("run", a, b, "--model", "tiny-seg", "--batch", "4", "--json", tmp_path / "d.jsonl", "--save", tmp_path / "v.mp4",
               "--metrics-json", tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    for i, n in enumerate((12, 7)):
        assert [json.loads(x)["index"] for x in (tmp_path / f"d-{i}.jsonl").read_text().splitlines()] == list(range(n))
        assert probe(tmp_path / f"v-{i}.mp4")["frames"] == n
    m = json.loads((tmp_path / "m.json").read_text())
    assert [s["frames_out"] for s in m["sources"]] == [12, 7] and "d-1.jsonl  (source 1: " in r.stdout


def test_several_sources_cannot_share_a_window(tmp_path):
    a = make_clip(tmp_path / "a.mp4", frames=3)
    r = rtpipe("run", a, a, "--model", "tiny-seg", "--serve", "8080")
    assert r.returncode == 2 and "--serve show one source" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bench_gpu_path_with_onnxruntime_is_one_line(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=3)
    r = rtpipe("bench", clip, "--model", "tiny-seg", "--path", "gpu", "--frames", "3")
    assert r.returncode == 2 and "--path gpu: the onnxruntime backend does not run on tensors" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_run_counts_lines_and_zones_and_eval_scores_the_tracks(tmp_path):
    from pipeline.analytics import Event
    from pipeline.demo.clip import write_clip

    clip, gt = write_clip(tmp_path, seed=7, frames=120)
    js, ev, out = tmp_path / "d.jsonl", tmp_path / "e.jsonl", tmp_path / "a.mp4"
    r = rtpipe("run", clip, "--line", "gate=0,0.6,1,0.6", "--zone", "road=0.3,0.45,0.7,0.45,1,1,0,1", "--events", ev,
               "--json", js, "--save", out, "--trails", 20)
    assert r.returncode == 0, r.stderr
    events = [Event.from_json(x) for x in ev.read_text().splitlines()]
    assert {e.event for e in events} >= {"line_in", "zone_enter", "zone_exit"}
    assert "zone_enter" in r.stdout and "botsort" in r.stdout and f"events: {ev}" in r.stdout  # the counts table, the outputs
    tracked = [d["tracker_id"] for x in js.read_text().splitlines() for d in json.loads(x)["detections"]]
    assert {e.tracker_id for e in events} <= set(tracked)
    e = rtpipe("eval", js, gt, "--events", ev, "--crossings", tmp_path / "crossings.json", "--json", tmp_path / "acc.json")
    assert e.returncode == 0, e.stderr
    acc = json.loads((tmp_path / "acc.json").read_text())
    assert 0 < acc["tracking"]["IDF1"] <= 1 and "HOTA" in e.stdout
    assert acc["lines"]["gate"]["counted"] == {k: sum(x.event == k and x.name == "gate" for x in events) for k in ("line_in", "line_out")}
    truth = json.loads((tmp_path / "crossings.json").read_text())
    assert acc["lines"]["gate"]["true"] == {k: sum(x["event"] == k for x in truth["events"]) for k in ("line_in", "line_out")}
    half = rtpipe("eval", js, gt, "--events", ev)
    assert half.returncode == 2 and "need both --events" in half.stderr


@pytest.mark.parametrize("args, message", [
    (["--track", "none", "--line", "0,0.5,1,0.5"], "--line (given on the command line or in a preset) needs a tracker"),
    (["--line", "0,0.5,1"], "--line '0,0.5,1': give [NAME=]4 numbers"),
    (["--track", "kalman"], "tracker 'kalman': choose one of"),
    (["--trails", "-1"], "--trails: "),
])
def test_bad_tracking_flags_are_one_line_and_exit_2(args, message):
    r = rtpipe("run", "synthetic:64x48@30", "--frames", 3, *args)
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("which, message", [("input", "is the input file"), ("json", "two outputs share one path")])
def test_the_events_file_cannot_overwrite_an_input_or_another_output(tmp_path, which, message):
    clip = make_clip(tmp_path / "clip.mp4", frames=5)
    events = clip if which == "input" else tmp_path / "d.jsonl"
    r = rtpipe("run", clip, "--json", tmp_path / "d.jsonl", "--events", events)
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert probe(clip)["frames"] == 5


def test_demo_refuses_an_unknown_tracker_before_rendering(tmp_path):
    r = rtpipe("demo", "--track", "kalman", "--out", tmp_path / "d")
    assert r.returncode == 2 and "tracker 'kalman'" in r.stderr and not (tmp_path / "d").exists()


def test_eval_refuses_an_unwritable_report_before_scoring(tmp_path):
    r = rtpipe("eval", tmp_path / "p.jsonl", tmp_path / "gt.json", "--json", tmp_path / "no" / "such" / "acc.json")
    assert r.returncode == 2 and "does not exist" in r.stderr and r.stderr.count("\n") == 1, r.stderr


@needs_rtsp_server
def test_ctrl_c_during_a_stalled_read_drains_without_waiting_for_the_read_timeout(tmp_path):
    """The publisher hangs (SIGSTOP): rtpipe's read waits up to --stall-timeout 10. Ctrl-C must
    not wait for it: the frames done are finalised (video = JSONL = metrics) straight away."""
    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(96, 64), fps=25)
    out, js, mj = tmp_path / "o.mp4", tmp_path / "o.jsonl", tmp_path / "m.json"
    with Publisher(clip, "rtsp") as pub:
        open_when_up(pub.url, reconnect=0).frames().close()
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", pub.url, "--model", "tiny-seg", "--stall-timeout", "10",
                                 "--save", str(out), "--json", str(js), "--metrics-json", str(mj)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        partial, deadline = tmp_path / "o.jsonl.partial", time.monotonic() + 60
        while time.monotonic() < deadline and (not partial.exists() or len(partial.read_text().splitlines()) < 10):
            time.sleep(0.05)
        os.kill(pub.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(1.5)  # rtpipe is now inside a read that would wait 10 s
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            took = time.monotonic() - t0
        finally:
            os.kill(pub.proc.pid, signal.SIGCONT)
    assert proc.returncode == 130, err
    assert took < 6, f"Ctrl-C waited {took:.1f} s: for the read timeout"  # a behaviour bound, far under the 10 s it would be
    lines = js.read_text().splitlines()
    m = json.loads(mj.read_text())
    # (frames that arrived bunched, e.g. the server's backlog at connect, are in the JSONL but left out of the video, counted)
    left_out = sum(m["video_left_out"].values())
    assert len(lines) == probe(out)["frames"] + left_out == m["frames_out"] >= 10 and m["interrupted"]


def test_a_stream_down_at_start_does_not_stop_the_other_sources(tmp_path):
    """A live stream that cannot be opened is retried for --reconnect while the file runs; then
    it fails alone: the file's outputs are complete, exit 1 names the stream."""
    from tests.conftest import free_port

    clip = make_clip(tmp_path / "c.mp4", frames=40, size=(96, 64))
    dead = f"rtsp://127.0.0.1:{free_port()}/dead"
    js = tmp_path / "o.jsonl"
    r = rtpipe("run", clip, dead, "--model", "tiny-seg", "--reconnect", "2", "--json", js, "--quiet")
    assert r.returncode == 1, r.stderr
    assert len((tmp_path / "o-0.jsonl").read_text().splitlines()) == 40  # the file ran to its end
    assert not (tmp_path / "o-1.jsonl").exists()
    assert f"'{dead}' is down after frame 0 (cannot open" in r.stderr
    assert f"'{dead}' was down from the start" in r.stderr and "did not come back in 2 s" in r.stderr


@needs_rtsp_server
def test_a_stream_down_at_start_joins_the_run_when_it_comes_up(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(96, 64), fps=25)
    js, mj = tmp_path / "o.jsonl", tmp_path / "m.json"
    pub = Publisher(clip, "rtsp")
    pub.start_server()  # the server answers, but nothing is published yet (404)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", pub.url, "synthetic:96x64@25?frames=200", "--model", "tiny-seg",
                                 "--frames", "50", "--reconnect", "20", "--json", str(js), "--metrics-json", str(mj), "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (tmp_path / "o-1.jsonl.partial").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the other source is running
        time.sleep(1.0)
        pub.start()
        _, err = proc.communicate(timeout=120)
    finally:
        pub.kill()
        pub.kill_server()
    assert proc.returncode == 0, err
    m = json.loads(mj.read_text())
    stream = m["sources"][0]
    assert stream["frames_in"] == 50 and len(stream["gaps"]) == 1 and stream["gaps"][0]["after_frame"] == 0
    assert stream["gaps"][0]["seconds"] >= 1.0 and "ended" not in stream["gaps"][0]
    assert len((tmp_path / "o-0.jsonl").read_text().splitlines()) == stream["frames_out"]


def _tiny_with_metadata(path, **props):
    """The bundled tiny model with some of its Ultralytics metadata replaced."""
    import onnx

    from pipeline.models import BUILTIN

    model = onnx.load(str(BUILTIN["tiny-seg"]))
    keep = {p.key: p.value for p in model.metadata_props} | props
    del model.metadata_props[:]
    for k, v in keep.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("props, message", [
    ({"stride": "abc"}, "metadata 'stride' is 'abc'"),
    ({"names": "{0: 'car', 'x': 'y', 2: 'z', 3: 'w'}"}, "must map class ids 0..N-1"),
    ({"names": "{0: 'car', 1: 'b', 2: 'c', 7: 'w'}"}, "must map class ids 0..N-1"),
    ({"names": "[" + "'c'," * 100_001 + "]"}, "100001 classes"),
])
def test_malformed_model_metadata_is_one_line_and_exit_2(tmp_path, props, message):
    bad = _tiny_with_metadata(tmp_path / "bad.onnx", **props)
    r = rtpipe("run", "synthetic:64x48@30?live=0&frames=2", "--model", bad)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr


def test_a_huge_rtnet_config_is_refused_before_anything_is_allocated(tmp_path):
    torch = pytest.importorskip("torch")
    ckpt = {"format": "rtpipe-rtnet", "version": 1, "arch": "rtnet", "state_dict": {},
            "config": {"names": ["a"], "imgsz": 320, "width": 10**9, "task": "segment"}}
    from pipeline.models import rtnet

    ckpt["format"], ckpt["version"] = rtnet.FORMAT, rtnet.VERSION
    torch.save(ckpt, tmp_path / "huge.pt")
    r = rtpipe("run", "synthetic:64x48@30?live=0&frames=2", "--model", tmp_path / "huge.pt")
    assert r.returncode == 2 and "config field 'width'" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_names_from_files_and_flags_cannot_drive_the_terminal(tmp_path):
    """Escape sequences in a model's file name (quoted by the error) are printed as text."""
    bad = _tiny_with_metadata(tmp_path / "m\x1b]0;pwned\x07 [bold]x.onnx", stride="abc")
    r = rtpipe("run", "synthetic:64x48@30?live=0&frames=2", "--model", bad)
    assert r.returncode == 2 and "\x1b" not in r.stderr and "\x07" not in r.stderr, repr(r.stderr)
    assert "\\x1b]0;pwned\\x07 [bold]x.onnx" in r.stderr


def test_an_existing_output_is_refused_unless_overwrite_is_given(tmp_path):
    js = tmp_path / "o.jsonl"
    js.write_text("precious\n")
    r = rtpipe("run", "synthetic:64x48@30?live=0&frames=3", "--model", "tiny-seg", "--json", js)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "exists: give --overwrite" in r.stderr, r.stderr
    assert js.read_text() == "precious\n"
    r = rtpipe("run", "synthetic:64x48@30?live=0&frames=3", "--model", "tiny-seg", "--json", js, "--overwrite")
    assert r.returncode == 0 and len(js.read_text().splitlines()) == 3
    for cmd in (["bench", "synthetic:64x48@30?live=0&frames=3", "--model", "tiny-seg", "--json", js],
                ["eval", js, js, "--json", js]):
        r = rtpipe(*cmd)
        assert r.returncode == 2 and "exists: give --overwrite" in r.stderr, r.stderr


def test_planted_links_at_the_partial_or_final_name_are_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch\n")
    js, mj = tmp_path / "o.jsonl", tmp_path / "m.json"
    (tmp_path / "o.jsonl.partial").symlink_to(victim)  # a link where the partial file will be written
    (tmp_path / "m.json.partial").symlink_to(victim)
    (tmp_path / "out.mp4.partial").symlink_to(victim)
    r = rtpipe("run", "synthetic:64x48@30?live=0&frames=3", "--model", "tiny-seg", "--json", js, "--metrics-json", mj,
               "--save", tmp_path / "out.mp4")
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "do not touch\n"
    assert not js.is_symlink() and len(js.read_text().splitlines()) == 3 and json.loads(mj.read_text())["frames_out"] == 3
    assert probe(tmp_path / "out.mp4")["frames"] == 3
    js.unlink()
    js.symlink_to(victim)  # a link at the final name: refused, and with --overwrite the link itself is replaced
    assert rtpipe("run", "synthetic:64x48@30?live=0&frames=3", "--model", "tiny-seg", "--json", js).returncode == 2
    r = rtpipe("run", "synthetic:64x48@30?live=0&frames=3", "--model", "tiny-seg", "--json", js, "--overwrite")
    assert r.returncode == 0 and not js.is_symlink() and victim.read_text() == "do not touch\n"
