"""``rtpipe`` command line: parse, call the library, print, map errors to exit codes.

Exit codes: 0 done, 1 a stage failed, 2 bad input, 130 interrupted (Ctrl-C), 143 stopped by
SIGTERM, 129 by SIGHUP (the outputs finalised with the frames done, as for Ctrl-C). A second
signal aborts (outputs kept as .partial) with the first one's code.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
import warnings
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

from rich.console import Console

from pipeline.text import plain

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}  # 128 + the signal, as a shell reports it
DEMO_SEED = 7
RAW = argparse.RawDescriptionHelpFormatter

RUN_HELP = """\
Run a model on a source: grab -> preprocess -> infer -> postprocess -> overlay -> sinks.

SOURCE is a video file (mp4/mkv/avi/mov/webm), an image, a folder or a glob of images, a
camera (0 or /dev/video0), a stream URL (rtsp/rtmp/http(s)/udp/tcp/srt) or synthetic frames
(synthetic:1280x720@30, live; add ?live=0&frames=N for a file-like clip).

Several sources (rtpipe run A B C, any mix) share one model: their frames are batched into one
model call (--batch), and a batch is cut when its oldest frame would otherwise miss
--max-latency-ms, so a slow or reconnecting source never holds the others. A source that
fails ends only itself (exit 1 at the end, its outputs kept as .partial). Outputs are per
source: --save out.mp4 writes out-0.mp4, out-1.mp4, ... in the order given (same for --json).

A batch job (--out OUTDIR): every recording in the folders, globs (quoted) and @LIST files
given is its own run with the same settings, the model loaded once. Outputs are named after
each recording in OUTDIR (NAME.jsonl, NAME.metrics.json, NAME.events.jsonl with --line/--zone,
NAME.annotated.mp4 with --video); OUTDIR/manifest.jsonl records each one's status, frames,
FPS, wall time and error. A rerun skips what is done; a broken file fails alone (exit 1).
--ray [ADDRESS] runs the same job on Ray workers (a local instance, or a cluster).

Settings come from --config PRESET.yaml, then from the flags given here.
First Ctrl-C (or SIGTERM, SIGHUP): stop reading, finish the frames in flight and finalise the
outputs. A second one: stop at once (the outputs not finalised yet are kept as .partial files).
Exit codes: 0 done, 1 a stage failed, 2 bad input, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP.
"""

BUILD_HELP = """\
Build an engine from a checkpoint and check it: the exported graph is run on rendered sample
inputs against the PyTorch module and kept only if they agree; NAME.json is written beside it.

  --format onnx      ONNX (fp32, fp16 graph, or int8 Q/DQ), runs on ONNX Runtime
  --format aoti      torch.export + AOTInductor .pt2, runs with PyTorch alone (CPU or CUDA)
  --format tensorrt  TensorRT plan (needs tensorrt and a CUDA GPU; loadable by trtexec)

int8 is calibrated on --calib frames; a quarter of them are held back to compare its detections
with the fp32 reference, and the build fails above the loss limits unless --accept-accuracy-loss.
"""

DEMO_HELP = """\
The whole product on one generated clip, offline: render a dashcam clip from a seed with exact
ground truth, run the bundled demo model on it through the full pipeline (default backend)
with a tracker and a counting line across the road, write the annotated video, the detections
and the line events, print the run's metrics, the COCO box and mask mAP, the tracking scores
(HOTA, MOTA, IDF1) and the line counts against the ground truth.

Then the bundled road model (semantic segmentation: sky, road, lane marking, sidewalk, other)
runs over the same clip, and its mIoU and pixel accuracy are printed too.

Files in --out: clip.mp4, ground_truth.json (COCO, with track ids), ground_truth_mot.txt
(MOTChallenge rows), crossings.json (the true line crossings), ground_truth_semantic/ (a label
PNG per frame), annotated.mp4, detections.jsonl, events.jsonl, road.mp4, road.jsonl,
metrics.json, accuracy.json. Seeds from 1,000,000 up were used to train the models; the rest
are unseen.
"""

EVAL_HELP = """\
COCO box and mask mAP (pycocotools) of a detections JSONL written by 'rtpipe run --json' against
COCO ground truth (e.g. the ground_truth.json of 'rtpipe demo'). Frames are matched by index,
classes by name; only frames present in the JSONL are scored.

When the detections carry tracker ids (a run with a tracker) and the ground truth track ids
(rtpipe demo's does): HOTA, MOTA, IDF1 and ID switches (trackers.eval, TrackEval's method).
With --events (rtpipe run --events) and --crossings (rtpipe demo's crossings.json): each line's
counts against the true crossings.

Semantic segmentation: GT a folder of per-pixel ground truth (classes.json and NNNNNN.png per
frame index, as rtpipe demo's ground_truth_semantic/): mean IoU, per-class IoU and pixel accuracy.
"""

BENCH_HELP = """\
Measure a model in the pipeline, in one run, on one machine:

  engine only   the model alone on preprocessed frames, back to back (no decoding or writing)
  sequential    every stage in one thread, one frame at a time, as a simple script does it
  pipelined     rtpipe's pipeline: a thread per stage, bounded queues, batching

and report FPS of each, efficiency (pipelined / engine only), pipelining gain (pipelined /
sequential), per-stage p50/p95/p99, capture-to-overlay and capture-to-sink latency, dropped
frames, peak RSS (peak GPU memory on CUDA) and the stage that holds the pipeline back (or
that other programs kept the cores busy: then no stage is blamed and the figures are
pessimistic). The timed runs write their outputs (--sink) to a temporary folder that is
deleted afterwards.

The model is shaped by the same flags as in rtpipe run (--imgsz, --no-rect, --conf, ...).
--sweep KEY=V1,V2 ... measures every combination (keys: model, backend, device, batch, imgsz,
rect, sink, path), prints one table, and with --plot draws one line per configuration.
"""


def without_credentials(text: str) -> str:
    """Text that may quote a stream URL (a traceback holds the URL a source opened), its credentials hidden."""
    from pipeline.sources import redact_known

    return redact_known(text)


def say(message: str) -> None:
    """One unwrapped line on stderr (errors and notices must stay one line for scripts); none when
    stderr is gone (the terminal closed: SIGHUP), which must not change how the run ends."""
    try:
        sys.stderr.write(f"rtpipe: {plain(without_credentials(message))}\n")  # (messages quote file names, URLs and metadata)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# What a command produces (tables, the files it wrote) goes to stdout, so 'rtpipe demo > log' keeps it;
# progress, notices, warnings and errors go to stderr (the console main() hands each command).
results = Console()


def native_logging(debug: bool) -> None:
    """OpenCV's, FFmpeg's and the image decoders' own log lines only with --debug: without it rtpipe's
    one-line messages say what went wrong (OPENCV_LOG_LEVEL, when set, is left to decide)."""
    import cv2

    from pipeline import sources

    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING if debug else cv2.utils.logging.LOG_LEVEL_SILENT)
    sources.HIDE_DECODER_MESSAGES = not debug
    if debug:
        import av.logging

        av.logging.set_level(av.logging.WARNING)  # PyAV keeps FFmpeg's log off unless asked
    elif "av.logging" in sys.modules:
        sys.modules["av.logging"].set_level(None)


def as_flags(keys) -> dict[str, str]:
    """The run settings given as flags, by key: conf -> --conf (a bad value's error names what was typed)."""
    named = {"rect": "--no-rect", "lines": "--line", "zones": "--zone", "source": "SOURCE"}
    return {k: named.get(k, "--" + k.replace("_", "-")) for k in keys}


def _flags(p: argparse.ArgumentParser, *names: str) -> None:
    """Options shared by several commands, declared once. Defaults are None: the settings' own apply."""
    table = {
        "model": (["--model"], dict(help="ONNX file, .pt checkpoint, built engine (.pt2/.engine), torchvision:<arch>, preset YAML or "
                                         "builtin (default: demo, the bundled model trained on generated driving scenes)")),
        "weights": (["--weights"], dict(help="for torchvision:<arch>: a state_dict file, DEFAULT (torchvision's, downloads) or random")),
        "trust": (["--trust-checkpoint"], dict(action="store_true", default=None, dest="trust_checkpoint",
                                                help="allow unpickling a .pt checkpoint's Python objects (runs code from the file: "
                                                     "trusted files only)")),
        "trust_engine": (["--trust-engine"], dict(action="store_true", default=None, dest="trust_engine",
                                                  help="allow loading a .pt2 or .engine that rtpipe did not build on this account "
                                                       "(native code: trusted files only)")),
        "backend": (["--backend"], dict(help="runtime: auto, onnxruntime, torch, aoti or tensorrt (default: auto = an engine's own "
                                             "runtime; onnxruntime on the CPU, exporting checkpoints in memory; torch on CUDA). "
                                             "aoti/tensorrt with a checkpoint build an engine on first use and cache it in "
                                             "$RTPIPE_ENGINE_DIR or ~/.cache/rtpipe/engines")),
        "device": (["--device"], dict(help="cpu or cuda[:N] (default cpu)")),
        "imgsz": (["--imgsz"], dict(help="input size, N or H,W (e.g. 384,640): checked against a fixed-size ONNX; sets it for checkpoints "
                                                   "(YOLO: NxN; torchvision: the short side)")),
        "conf": (["--conf"], dict(type=float, help="minimum detection score, 0..1 (default 0.25)")),
        "iou": (["--iou"], dict(type=float, help="NMS IoU threshold, 0..1 (default 0.45)")),
        "max_det": (["--max-det"], dict(type=int, dest="max_det", help="detections kept per frame (default 300)")),
        "rect": (["--no-rect"], dict(action="store_false", dest="rect", default=None,
                                     help="checkpoints: fit frames into the whole input, as fixed-size engines do (default: to each "
                                          "frame's shape; YOLO padded only to a multiple of the stride, as Ultralytics' predictor does; "
                                          "aoti/tensorrt: an engine per shape)")),
        "nms": (["--nms"], dict(action="store_true", default=None,
                                help="also run NMS on the outputs of NMS-free models (YOLO26 end-to-end, RT-DETR), which are final "
                                     "without it")),
        "classes": (["--classes"], dict(type=int, nargs="+", help="keep only these class ids")),
        "quiet": (["--quiet"], dict(action="store_true", help="no progress bars and no tables")),
        "debug": (["--debug"], dict(action="store_true", help="show tracebacks, and the log lines of OpenCV, FFmpeg and the image "
                                                              "decoders (hidden without it)")),
    }
    for name in names:
        flags, kw = table[name]
        p.add_argument(*flags, **kw)


# The flags that shape the model, in rtpipe run's order: run and bench take the same ones
MODEL_FLAGS = ("model", "weights", "trust", "trust_engine", "backend", "device", "conf", "iou", "imgsz", "max_det", "rect", "nms",
               "classes")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rtpipe")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


class Parser(argparse.ArgumentParser):
    """argparse with errors as one line, like every other error (usage stays in --help)."""

    def error(self, message: str):
        say(f"error: {self.prog}: {message} (see {self.prog} --help)")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rtpipe", description="Real-time detection and segmentation on video.")
    parser.add_argument("--version", action="version", version=f"rtpipe {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser("run", help="run a model on a video, camera, stream or images", description=RUN_HELP, formatter_class=RAW)
    run.add_argument("source", nargs="*", help="what to read (see above), one or more; may come from --config instead")
    run.add_argument("--config", metavar="YAML", help="preset file with any of the settings below (configs/)")
    _flags(run, *MODEL_FLAGS)
    run.add_argument("--batch", type=int, help="frames per model call (default 1)")
    run.add_argument("--max-latency-ms", type=float, dest="max_latency_ms",
                     help="cut a batch early so its oldest frame is done within this many ms of capture "
                          "(default 100 when a source is live; files: batches fill up)")
    run.add_argument("--frames", type=int, help="stop after reading N frames from the source")
    run.add_argument("--reconnect", type=float, metavar="SECONDS", help="how long a camera or network stream may go without a "
                                                                        "frame (counted from its last one; reopened with backoff) "
                                                                        "before it ends (default 30; 0: never retried)")
    run.add_argument("--stall-timeout", type=float, metavar="SECONDS", dest="stall_timeout",
                     help="a network stream that takes this long to open or sends nothing for this long counts as down "
                          "(default 5)")
    run.add_argument("--save", metavar="VIDEO", help="write the annotated video (.mp4, .mkv, .mov); for an image folder, give a "
                                                     "folder: annotated pictures named as the inputs")
    run.add_argument("--overwrite", action="store_true", default=None, help="replace outputs that exist (without it, an existing "
                                                                             "output is an error)")
    run.add_argument("--json", metavar="JSONL", dest="json", help="write detections, one JSON line per frame")
    run.add_argument("--show", action="store_true", default=None, help="show a window (OpenCV with GUI only)")
    run.add_argument("--serve", metavar="HOST:PORT", help="browser view at http://HOST:PORT/ (host defaults to 127.0.0.1)")
    run.add_argument("--token", help="require ?token=TOKEN for the browser view")
    run.add_argument("--hud", action="store_true", default=None, help="draw FPS and latency on the frames")
    run.add_argument("--metrics-json", metavar="PATH", dest="metrics_json", help="write the run's metrics as JSON")
    run.add_argument("--classify-crops", dest="classify_crops", metavar="SPEC",
                     help="run this classifier on each detection's crop (torchvision:<arch> with --classify-weights, or an engine "
                          "built from one); its label and score are drawn and written beside the detector's")
    run.add_argument("--classify-weights", dest="classify_weights", metavar="W",
                     help="the crop classifier's weights: a state_dict file, DEFAULT (torchvision's; downloads) or random")
    run.add_argument("--track", metavar="NAME", help="follow objects across frames: botsort, bytetrack, or none (default: botsort "
                                                     "when --line, --zone, --events, --trails, --reid, --smooth-boxes or "
                                                     "--calibrate is given, else none)")
    run.add_argument("--line", action="append", metavar="[NAME=]X1,Y1,X2,Y2",
                     help="count tracked objects crossing this line, per class and direction (pixels, or fractions of the frame "
                          "when all are <= 1); repeat for more")
    run.add_argument("--zone", action="append", metavar="[NAME=]X1,Y1,X2,Y2,X3,Y3,...",
                     help="count entries, exits, occupancy and dwell time in this polygon; repeat for more")
    run.add_argument("--events", metavar="JSONL", help="write line and zone events, one JSON line each")
    run.add_argument("--trails", type=int, metavar="N", help="draw each track's path over its last N frames")
    run.add_argument("--reid", metavar="SPEC", help="appearance re-identification over the tracker: ids kept when look-alikes "
                                                   "cross and when a hidden object comes back (hist: colour layout of each "
                                                   "box, no model; README: Tracking)")
    run.add_argument("--smooth-boxes", dest="smooth_boxes", action="store_true", default=None,
                     help="write and draw tracked objects' boxes as their tracks' smoothed (Kalman) states, as Ultralytics' "
                          "model.track does, instead of the detector's boxes (masks stay as detected)")
    run.add_argument("--calibrate", metavar="X1,Y1,...,X4,Y4=GX1,GY1,...,GX4,GY4",
                     help="speed of each tracked object in km/h (JSONL speed_kmh, drawn in its label): 4 picture points "
                          "(pixels, or fractions of the frame when all are <= 1) = the 4 ground points they show, in metres; "
                          "no three on one line, both sides in the same order (README: Speed)")
    run.add_argument("--heatmap", metavar="PATH.png", help="where the detections stood (box bottom centres; only confirmed "
                                                          "tracks when tracking): PATH.png over the last frame and the array "
                                                          "as PATH.npy, written at the end (one per source)")
    job = run.add_argument_group("batch job: one run per recording (folders of dashcam recordings)")
    job.add_argument("--out", metavar="OUTDIR", help="process each recording of the SOURCEs (folders, searched recursively; quoted "
                                                    "globs; @LIST: a file with one path per line) as its own run, outputs named after it "
                                                    "in OUTDIR with a manifest; a rerun skips what is done (--overwrite: start over)")
    job.add_argument("--video", action="store_true", help="with --out: also write each recording's annotated video (NAME.annotated.mp4)")
    job.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="with --out: run the job on Ray workers, each with the model loaded once: a local Ray instance, or the "
                          "cluster at ADDRESS (auto, HOST:6379; a bare --ray uses RAY_ADDRESS when set); needs rtpipe[ray]")
    job.add_argument("--workers", type=int, metavar="N", help="with --ray: how many workers (default: one per GPU with --device cuda, "
                                                              "else half the CPUs)")
    job.add_argument("--retries", type=int, default=2, metavar="N",
                     help="with --ray: how many times a recording whose worker died is given to another (default 2)")
    _flags(run, "quiet", "debug")

    b = sub.add_parser("build", help="build an engine (ONNX, AOTInductor .pt2, TensorRT plan) from a checkpoint",
                       description=BUILD_HELP, formatter_class=RAW)
    b.add_argument("spec", metavar="SPEC", help="checkpoint (.pt/.pth), torchvision:<arch>, ONNX file or preset YAML")
    b.add_argument("--format", default="onnx", choices=["onnx", "aoti", "tensorrt"], help="engine format (default onnx)")
    b.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"], help="default fp32")
    b.add_argument("--batch", default="1", help="N (fixed) or MIN:OPT:MAX (dynamic), default 1")
    _flags(b, "imgsz", "device", "weights", "trust")
    b.add_argument("--workspace", type=float, metavar="GIB", help="TensorRT workspace limit in GiB")
    b.add_argument("--opt-level", type=int, default=3, dest="opt_level", help="TensorRT builder optimisation level 0-5 (default 3)")
    b.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    b.add_argument("--calib", metavar="PATH", help="int8: calibration frames, a folder of images or a video")
    b.add_argument("--calib-frames", type=int, default=64, dest="calib_frames", help="int8: frames taken from --calib (default 64)")
    b.add_argument("--accept-accuracy-loss", action="store_true", dest="accept_accuracy_loss",
                   help="int8: keep an engine that fails the accuracy check against the fp32 reference")
    b.add_argument("-o", "--out", default="engines", metavar="DIR", help="output folder (default engines/)")
    b.add_argument("--name", help="engine file name without extension (default: STEM-HxW-bBATCH-PRECISION)")
    b.add_argument("--overwrite", action="store_true", help="replace an engine and sidecar that exist, or write into rtpipe's "
                                                            "own model folder (without it, either is an error)")
    _flags(b, "debug")

    d = sub.add_parser("demo", help="generate a clip, run the bundled model on it, score it against the ground truth",
                       description=DEMO_HELP, formatter_class=RAW)
    d.add_argument("--seed", type=int, default=DEMO_SEED, help=f"which clip to generate (default {DEMO_SEED})")
    d.add_argument("--frames", type=int, default=300, help="clip length in frames at 30 FPS (default 300)")
    d.add_argument("--size", default="1280x720", metavar="WxH", help="clip size (default 1280x720; the model was trained on 16:9)")
    d.add_argument("--out", default="demo-out", metavar="DIR", help="where the files go (default demo-out/)")
    d.add_argument("--track", default="botsort", help="tracker: botsort, bytetrack, or none (default botsort: ids, a counting "
                                                      "line, tracking metrics)")
    _flags(d, "backend", "device", "quiet", "debug")

    e = sub.add_parser("eval", help="COCO mAP, tracking scores and line counts of a run's outputs against ground truth",
                       description=EVAL_HELP, formatter_class=RAW)
    e.add_argument("predictions", metavar="PRED.jsonl", help="detections from rtpipe run --json")
    e.add_argument("ground_truth", metavar="GT.json", help="COCO ground truth, or a folder of per-pixel ground truth "
                                                          "(semantic models: rtpipe demo's ground_truth_semantic/)")
    e.add_argument("--events", metavar="EVENTS.jsonl", help="line events from rtpipe run --events, scored with --crossings")
    e.add_argument("--crossings", metavar="CROSSINGS.json", help="the true line crossings (the crossings.json of rtpipe demo)")
    e.add_argument("--json", metavar="PATH", dest="json_out", help="also write the results as JSON")
    e.add_argument("--overwrite", action="store_true", help="replace the JSON file if it exists")
    _flags(e, "debug")

    bn = sub.add_parser("bench", help="measure engine-only, sequential and pipelined FPS, per-stage latency and memory",
                        description=BENCH_HELP, formatter_class=RAW)
    bn.add_argument("source", metavar="SOURCE", help="what to read, as for rtpipe run (a file: the first --frames frames)")
    _flags(bn, *MODEL_FLAGS)
    bn.add_argument("--batch", type=int, help="frames per model call in engine-only and pipelined runs (default 1)")
    bn.add_argument("--frames", type=int, help="frames per timed run (default 300)")
    bn.add_argument("--warmup", type=int, help="untimed model calls before timing (default 10)")
    bn.add_argument("--path", choices=["auto", "cpu", "gpu"],
                    help="where pre/post-processing run: auto (default: on the GPU when the model runs on CUDA on torch, aoti or "
                         "tensorrt), cpu (host numpy/OpenCV, to compare), gpu")
    bn.add_argument("--sink", help="what the timed runs write: none, jsonl, or video (annotated H.264 + jsonl); default jsonl")
    bn.add_argument("--sweep", nargs="+", metavar="KEY=V1,V2", help="measure every combination, e.g. batch=1,2,4 backend=onnxruntime,aoti")
    bn.add_argument("--json", metavar="PATH", dest="json_out", help="write the report as JSON")
    bn.add_argument("--plot", metavar="PNG", help="draw throughput and latency per configuration (needs matplotlib: rtpipe[bench])")
    bn.add_argument("--overwrite", action="store_true", help="replace the report or plot if they exist")
    _flags(bn, "quiet", "debug")

    info = sub.add_parser("info", help="show what an engine is and whether it runs here",
                          description="Print an engine's sidecar: what it is, how it was built and checked, and whether it can run here.")
    info.add_argument("engine", metavar="ENGINE", help="an engine made by rtpipe build (.onnx, .pt2, .engine) or its .json")
    info.add_argument("--json", action="store_true", help="print the sidecar as JSON")
    info.add_argument("--device", help="check it against this device (default: the one it was built for)")

    ft = sub.add_parser("finetune", help="train a crop classifier's head on labelled crops (a folder per class)",
                        description="Transfer learning: a new last layer for a torchvision classifier, trained on the crops in "
                                    "FOLDER/<class>/ over its frozen base; the result is what --classify-crops takes.")
    ft.add_argument("folder", metavar="FOLDER", help="one sub-folder of images per class (python -m pipeline.demo.crops makes one)")
    ft.add_argument("-o", "--out", required=True, help="the state_dict file to write (.pth)")
    ft.add_argument("--arch", default="resnet18", help="torchvision classifier (default resnet18)")
    ft.add_argument("--weights", help="the frozen base: a state_dict file or DEFAULT (torchvision's; downloads); "
                                      "default: random (seeded) -- only for trying it out")
    ft.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    _flags(ft, "quiet", "debug")

    from pipeline.service.command import add_parser as add_serve

    add_serve(sub)
    return parser


@contextmanager
def progress_bar(console: Console, quiet: bool, eta: bool = False):
    """A transient rich progress display; yields ``task(description, total) -> update(done)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    bar = Progress(*columns, *([TimeRemainingColumn()] if eta else []), console=console, transient=True, disable=quiet)
    bar.start()

    def task(description: str, total: int | None):
        tid = bar.add_task(description, total=total)
        return lambda done: bar.update(tid, completed=done)

    try:
        yield task
    finally:
        with suppress(OSError):  # the terminal is gone (SIGHUP): what the run ends with does not depend on it
            bar.stop()


def cmd_run(args, console: Console) -> int:
    from pipeline.config import ConfigError, build_config

    keys = ("model", "weights", "trust_checkpoint", "trust_engine", "backend", "device", "conf", "iou", "imgsz", "max_det", "nms",
            "classes", "batch", "rect",
            "max_latency_ms", "frames", "reconnect", "stall_timeout", "save", "overwrite", "json", "show", "serve", "token", "hud",
            "metrics_json", "track", "line", "zone", "events", "trails", "reid", "smooth_boxes", "calibrate", "heatmap",
            "classify_crops", "classify_weights")
    overrides = {k: getattr(args, k) for k in keys} | {"source": args.source or None}
    overrides["lines"], overrides["zones"] = overrides.pop("line"), overrides.pop("zone")
    if args.out is not None:
        return run_batch(args, overrides, console)
    for flag, given in (("--video", args.video), ("--ray", args.ray), ("--workers", args.workers), ("--retries", args.retries != 2)):
        if given:
            raise ConfigError(f"{flag} is for batch jobs: add --out OUTDIR (one run per recording, outputs named after each)")
    return run_session(build_config(args.config, overrides, flags=as_flags(overrides)), console, args.quiet, args.debug)


def run_batch(args, overrides: dict, console: Console) -> int:
    """``rtpipe run SOURCES --out OUTDIR``: one run per recording, with progress, the summary and the failures; the exit code."""
    from pipeline.batch import BatchJob
    from pipeline.batch.job import PER_RUN, LocalRunner
    from pipeline.config import ConfigError, build_config

    if args.ray is not None:
        from pipeline.batch.ray_job import check_address

        check_address(args.ray)  # first: argparse gives --ray the folder in 'rtpipe run --ray DIR --out OUT'
    specs = overrides.pop("source") or []
    cfg = build_config(args.config, overrides, flags=as_flags(overrides))
    for key in PER_RUN:  # a preset's one-run outputs, named as the preset has them (the command line's are refused by the job)
        name = "json" if key == "json_path" else key
        if getattr(cfg, key) and overrides.get(name) is None:
            raise ConfigError(f"{args.config}: '{name}' names one run's output: with --out every recording's outputs are named "
                              "after it (--video for annotated videos): use a preset without it")
    if not specs:  # from the preset
        specs, cfg = cfg.sources, cfg.model_copy(update={"source": None})
    if not specs:
        raise ConfigError("no recordings: give folders, files, quoted globs or @LIST.txt, e.g. rtpipe run recordings/ --out results/")
    if args.ray is not None:
        from pipeline.batch.ray_job import RayRunner, import_ray

        import_ray()
        runner = RayRunner(None if args.ray == "local" else args.ray, args.workers, args.retries)
    else:
        if args.workers is not None or args.retries != 2:
            raise ConfigError("--workers and --retries are for --ray: the job without it runs in this process")
        runner = LocalRunner()
    job = BatchJob.create(specs, args.out, cfg, video=args.video)
    with progress_bar(console, args.quiet, eta=True) as task:
        bar = {}

        def start(todo: int, skipped: int) -> None:
            where = "" if args.ray is None else f" on Ray ({args.ray})"
            if skipped and not args.quiet:
                console.print(f"{skipped} of {len(job.recordings)} recordings already done in {job.out} (skipped)", markup=False,
                              highlight=False)
            bar["update"] = task(f"{todo} recording{'s' * (todo != 1)}{where}", todo)

        def progress(done: float, entry: dict | None) -> None:
            bar["update"](done)
            if entry is not None and entry["status"] == "failed":
                error = entry["error"]  # most errors name the recording already: name it once
                say(f"failed: {error}" if entry["input"] in error else f"failed: {entry['input']}: {error}")
            for warning in (entry or {}).get("warnings", []):
                say(f"warning: {entry['input']}: {warning}")

        summary = job.run(runner, restart=bool(cfg.overwrite), progress=progress, on_start=start)
    if not args.quiet:
        results.print(render_summary(summary))
        results.print(f"manifest: {summary.manifest}", markup=False, highlight=False)
    if summary.signal is not None:
        say(f"stopped by {summary.signal}: {summary.done} done, {summary.failed} failed, {summary.interrupted} interrupted, "
            f"{summary.left} left (rerun the same command to go on)")
        return EXIT_SIGNAL.get(summary.signal, EXIT_INTERRUPTED)
    if summary.failed:
        say(f"{summary.failed} of {summary.total} recordings failed (see {summary.manifest}); rerun the same command to retry them")
        return EXIT_FAILED
    return EXIT_OK


def render_summary(summary):
    """The job's outcome as a table."""
    from rich.table import Table

    t = Table(title="batch job", show_header=False)
    rows = [("recordings", summary.total), ("done", summary.done), ("skipped (done before)", summary.skipped),
            ("failed", summary.failed), ("interrupted", summary.interrupted), ("left to do (not started)", summary.left),
            ("worker deaths (retried)", summary.retried), ("frames", summary.frames), ("wall time", f"{summary.wall_s:.1f} s"),
            ("frames/s (whole job)", f"{summary.frames / summary.wall_s:.1f}" if summary.frames and summary.wall_s else "-")]
    r = summary.runner
    if r.get("kind") == "ray":
        rows.append(("ray", f"{r.get('workers')} worker{'s' * (r.get('workers') != 1)} on {r.get('nodes', '?')} node(s) ({r.get('address')}); "
                            f"start {r.get('init_s', 0):.1f} s, workers ready {r.get('ready_s', 0):.1f} s"))
    elif r.get("load_s") is not None:
        rows.append(("model load (once)", f"{r['load_s']:.2f} s"))
    for k, v in rows:
        t.add_row(k, str(v))
    return t


def run_session(cfg, console: Console, quiet: bool, debug: bool) -> int:
    """Run the library session ``cfg`` describes, with progress and the metrics table; returns the exit code.

    The stop signals are this function's from its first line: the first (SIGINT, SIGTERM,
    SIGHUP) drains the run, also while the model loads or a stream is being opened (which is
    then left at once), a second aborts it, at any moment until the process ends."""
    import threading

    from pipeline.runtime.signals import StopSignals

    stop, sessions = threading.Event(), []

    def first(name: str) -> None:
        stop.set()  # a source being opened stops waiting
        for s in sessions:
            s.drain(name)

    def second(name: str) -> None:
        for s in sessions:
            s.abort()

    with StopSignals(first, second) as signals:
        return _run_session(cfg, console, quiet, debug, signals, stop, sessions)


def _run_session(cfg, console: Console, quiet: bool, debug: bool, signals, stop, sessions: list) -> int:
    from pipeline.metrics import render_counts, render_table
    from pipeline.runtime import StageError
    from pipeline.runtime.session import Session

    session = Session(cfg, stop=stop)
    sessions.append(session)
    if signals.first is not None:  # it came while the session was being made: the run ends before it starts
        session.drain(signals.first)
    if signals.count > 1:
        session.abort()
    for url in (s.url for own in session.sinks.values() for s in own if s.url is not None):
        console.print(f"browser view: {url}", markup=False, highlight=False)

    def failed(exc) -> int:
        partial = session.kept_partial()
        say(f"error: {exc}" + (f" (partial outputs kept: {', '.join(p.name for p in partial)})" if partial else ""))
        if debug:
            console.print(without_credentials("".join(traceback.format_exception(exc.error))), highlight=False, markup=False)
        return EXIT_FAILED

    first = session.sources[0].uri if session.sources[0].live else Path(cfg.sources[0]).name
    error = None
    with progress_bar(console, quiet, eta=True) as task:
        update = task(first if len(cfg.sources) == 1 else f"{len(cfg.sources)} sources", session.total_frames)
        try:
            session.run(on_frame=update, handle_sigint=False)
        except StageError as exc:  # a stage, or a source (SourceFailed: the others ran to their end, reported below)
            error = exc
    metrics = session.metrics
    if metrics is None:
        return failed(error)
    if not quiet:
        with suppress(OSError):  # stdout is gone (the terminal closed: SIGHUP): how the run ended does not depend on it
            results.print(render_table(metrics))
            if (counts := render_counts(metrics)) is not None:
                results.print(counts)
            for i, s in session.outputs():
                if s.path.exists() and not metrics["aborted"]:
                    kind = "pictures" if s.path.is_dir() else "video" if s.needs_image else "events" if s.shared else "detections"
                    results.print(f"{kind}: {s.path}" + (f"  (source {i}: {session.sources[i].uri})" if len(cfg.sources) > 1
                                                         and i is not None else ""), soft_wrap=True, markup=False)
    for path, n in (metrics.get("video_left_out") or {}).items():
        say(f"note: {n} frame(s) that arrived bunched after an outage were left out of '{Path(path).name}' (each would have "
            "played more than a frame period late); they are in the JSONL and the metrics")
    for s in metrics.get("sources") or []:
        if s.get("unreadable"):
            more = ", ..." if s["unreadable"] > len(s["unreadable_files"]) else ""
            say(f"warning: {s['unreadable']} unreadable image(s) skipped in '{s['uri']}': "
                + ", ".join(Path(f).name for f in s["unreadable_files"]) + more)
        if s.get("damaged"):
            more = ", ..." if s["damaged"] > len(s["damaged_files"]) else ""
            say(f"warning: {s['damaged']} damaged image(s) in '{s['uri']}' processed as far as they decoded (their decoder "
                "reported errors): " + ", ".join(Path(f).name for f in s["damaged_files"]) + more)
        if s.get("missing_frames") and not metrics["interrupted"] and s.get("error") is None:
            say(f"warning: '{s['uri']}' ended after {s['total'] - s['missing_frames']} of the {s['total']} frames it declares: "
                "the file is truncated or damaged; the frames it had were processed")
        if s.get("corrupt_packets"):
            say(f"warning: {s['corrupt_packets']} damaged packet(s) skipped in '{s['uri']}' (their frames are not in the outputs)")
    if error is not None:
        return failed(error)
    by = {"SIGTERM": " by SIGTERM", "SIGHUP": " by SIGHUP"}.get(signals.first, "")
    if metrics["aborted"]:
        partial = session.kept_partial()
        say(f"aborted{by} (a second signal) after {metrics['frames_out']} frames; "
            + (f"outputs kept only as .partial files: {', '.join(p.name for p in partial)}" if partial else "no output was finalised"))
        return signals.exit_code or EXIT_INTERRUPTED
    if metrics["interrupted"] or signals.first is not None:
        say(f"interrupted{by} after {metrics['frames_out']} frames; the outputs hold those frames")
        return signals.exit_code or EXIT_SIGNAL.get(metrics.get("signal"), EXIT_INTERRUPTED)
    return EXIT_OK


def cmd_demo(args, console: Console) -> int:
    from pipeline.config import build_config
    from pipeline.demo.clip import DEMO_LINES, check_demo, write_clip
    from pipeline.evaluate import evaluate, render_table, render_tracking
    from pipeline.evaluate_semantic import evaluate_semantic
    from pipeline.evaluate_semantic import render_table as semantic_table

    out, size = Path(args.out), check_demo(args.out, args.frames, args.size)
    if args.track != "none":
        from pipeline.tracking import tracker_class

        tracker_class(args.track)  # a wrong name before anything is rendered
    with progress_bar(console, args.quiet) as task:
        clip, gt = write_clip(out, args.seed, args.frames, size, progress=task(f"rendering clip {args.seed}", args.frames))
    if not args.quiet:
        results.print(f"clip: {clip} ({args.frames} frames of {size[0]}x{size[1]}, seed {args.seed}); ground truth: {gt}",
                      highlight=False, soft_wrap=True, markup=False)
    detections, events = out / "detections.jsonl", out / "events.jsonl"
    cfg = build_config(None, {"source": str(clip), "model": "demo", "backend": args.backend, "device": args.device,
                              "save": str(out / "annotated.mp4"), "json": str(detections), "metrics_json": str(out / "metrics.json"),
                              "track": args.track, "lines": DEMO_LINES if args.track != "none" else [],
                              "events": None if args.track == "none" else str(events), "trails": 0 if args.track == "none" else 30,
                              "overwrite": True})  # the demo's folder is its own: a second demo replaces the first
    code = run_session(cfg, console, args.quiet, args.debug)
    if code != EXIT_OK:
        return code
    # the road: the demo's semantic model over the same clip (a second, small model; ONNX Runtime on the CPU,
    # whatever --device: it ships as ONNX only, and the plain onnxruntime package has no CUDA)
    road = out / "road.jsonl"
    code = run_session(build_config(None, {"source": str(clip), "model": "demo-road", "device": "cpu", "json": str(road),
                                           "save": str(out / "road.mp4"), "overwrite": True}), console, True, args.debug)
    if code != EXIT_OK:
        return code
    with console.status("scoring against the ground truth (pycocotools, trackers.eval)") if not args.quiet else nullcontext():
        tracked = args.track != "none"
        result = evaluate(detections, gt, events if tracked else None, out / "crossings.json" if tracked else None)
        result["semantic"] = evaluate_semantic(road, out / "ground_truth_semantic")
    (out / "accuracy.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if not args.quiet:
        for table in [render_table(result), *render_tracking(result), semantic_table(result["semantic"])]:
            results.print(table)
        results.print(f"accuracy: {out / 'accuracy.json'}", highlight=False, markup=False)
    return EXIT_OK


def cmd_eval(args, console: Console) -> int:
    from pipeline.evaluate import evaluate, render_table, render_tracking
    from pipeline.sinks import check_writable, write_complete

    if args.json_out:
        check_writable(Path(args.json_out), overwrite=args.overwrite)
    if Path(args.ground_truth).is_dir():  # per-pixel ground truth: semantic segmentation
        from pipeline.evaluate_semantic import evaluate_semantic
        from pipeline.types import InputError

        if args.events or args.crossings:
            raise InputError("--events and --crossings score a tracker's line counts against COCO ground truth (GT.json), "
                             "not against per-pixel ground truth: drop them")
        from pipeline.evaluate_semantic import render_table as semantic_table

        result = evaluate_semantic(args.predictions, args.ground_truth)
        tables = [semantic_table(result)]
    else:
        result = evaluate(args.predictions, args.ground_truth, args.events, args.crossings)
        tables = [render_table(result), *render_tracking(result)]
    if args.json_out:
        write_complete(args.json_out, json.dumps(result, indent=2) + "\n")
    for table in tables:
        results.print(table)
    return EXIT_OK


def cmd_build(args, console: Console) -> int:
    import time

    from pydantic import ValidationError

    from pipeline.build import BuildOptions, build
    from pipeline.config import ConfigError, explain, weights_for

    keys = ("format", "precision", "imgsz", "batch", "device", "workspace", "opt_level", "opset", "calib", "calib_frames",
            "accept_accuracy_loss")
    try:
        options = BuildOptions(**{k: getattr(args, k) for k in keys if getattr(args, k) is not None})
    except ValidationError as exc:
        raise ConfigError(explain(exc, "command line")) from None
    weights = weights_for(args.spec, args.weights)
    started = time.perf_counter()
    with console.status(f"building {args.spec}") as status:
        def progress(step: str) -> None:
            status.update(f"[bold]{args.spec}[/] [{time.perf_counter() - started:5.1f} s] {step}")
            if step.startswith("warning:"):
                say(step)

        engine = build(args.spec, options, args.out, weights, bool(args.trust_checkpoint), args.name, progress, args.overwrite)
    results.print(f"built {engine} in {time.perf_counter() - started:.1f} s (metadata: {engine.with_suffix('.json')})",
                  highlight=False, soft_wrap=True, markup=False)
    return EXIT_OK


def cmd_bench(args, console: Console) -> int:
    import shlex

    from pipeline import bench
    from pipeline.bench.report import render_report, render_sweep

    bench.check_outputs(args.json_out, args.plot, args.overwrite)
    keys = ("source", "model", "backend", "device", "batch", "imgsz", "rect", "conf", "iou", "max_det", "classes", "nms", "frames", "warmup",
            "sink", "path", "weights", "trust_checkpoint", "trust_engine")
    base = {k: getattr(args, k) for k in keys}
    with progress_bar(console, args.quiet) as task:
        done = bench.run(base, args.sweep, shlex.join(["rtpipe", *sys.argv[1:]]), task,
                         flags=as_flags(k for k, v in base.items() if v is not None))
    done.write(args.json_out, args.plot)
    if not args.quiet:
        for table in [render_sweep(done.reports, done.labels)] if args.sweep else render_report(done.reports[0]):
            results.print(table)
        for label, p in (("report", args.json_out), ("plot", args.plot)):
            if p:
                results.print(f"{label}: {p}", highlight=False, markup=False)
    return EXIT_OK


def cmd_finetune(args, console: Console) -> int:
    from pipeline.models.classify import ARCHS
    from pipeline.models.finetune import finetune, save
    from pipeline.sinks import check_writable
    from pipeline.types import InputError

    if args.arch not in ARCHS:
        raise InputError(f"--arch {args.arch!r}: choose one of {', '.join(ARCHS)}")
    out = check_writable(Path(args.out), args.overwrite)
    try:
        result = finetune(args.folder, args.arch, args.weights)
    except (ValueError, FileNotFoundError) as exc:
        raise InputError(str(exc)) from None
    save(result, out)
    if not args.quiet:
        results.print(f"{out}: {args.arch} head for {', '.join(result.names)} (training accuracy {result.train_accuracy:.1%}); "
                      f"use it with --classify-crops torchvision:{args.arch} --classify-weights {out}", markup=False, highlight=False)
    return 0


def cmd_info(args, console: Console) -> int:
    from pipeline.build.info import render, render_model
    from pipeline.models import BUILTIN, resolve
    from pipeline.sidecar import engine_of, problems, read, sidecar_path

    path = BUILTIN.get(args.engine) or engine_of(Path(args.engine))  # a builtin by name, as --model takes it
    if args.engine in BUILTIN and not sidecar_path(path).is_file():  # one that ships as ONNX alone: what its metadata says
        meta = resolve(args.engine).meta
        if args.json:
            print(json.dumps({"model": meta.to_dict()}, indent=2))
        else:
            results.print(render_model(args.engine, path, meta), highlight=False)
        return EXIT_OK
    record = read(path)
    if args.json:
        print(json.dumps(record, indent=2))
        return EXIT_OK
    results.print(render(path, record, problems(record, path, args.device or record.get("device"))), highlight=False)
    return EXIT_OK


def cmd_serve(args, console: Console) -> int:
    from pipeline.service.command import serve

    return serve(args, say, lambda line: results.print(line, markup=False, highlight=False, soft_wrap=True))


class StoppedBySignal(BaseException):
    """A stop signal outside a run (while the command starts, between a demo's runs): the command ends."""


def _stop_now(signum, frame) -> None:
    raise StoppedBySignal(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """The ``rtpipe`` command. Called as the program (``argv`` None) it owns the stop signals for its
    whole life: outside a run (which drains on the first, see ``run_session``) one ends the command
    with its code; after the command they are ignored, so a signal while the interpreter exits
    (Python then gives them back their default, killing action) cannot lose the exit code."""
    if argv is not None:
        return _main(argv)
    from pipeline.runtime.signals import STOP_SIGNALS

    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop_now)
    try:
        return _main(argv)
    except StoppedBySignal as stopped:
        say(f"stopped by {stopped.args[0]}")
        return EXIT_SIGNAL.get(stopped.args[0], EXIT_INTERRUPTED)
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    native_logging(getattr(args, "debug", False))
    warnings.showwarning = lambda message, *_a, **_k: say(f"warning: {message}")
    from pipeline.build.options import CheckFailed
    from pipeline.types import InputError

    commands = {"run": cmd_run, "demo": cmd_demo, "eval": cmd_eval, "build": cmd_build, "bench": cmd_bench, "info": cmd_info,
                "finetune": cmd_finetune, "serve": cmd_serve}
    try:
        return commands[args.command](args, console)
    except CheckFailed as exc:
        say(f"error: {exc}")
        return EXIT_FAILED
    except InputError as exc:  # settings, models, sources, sinks, builds, sidecars, metadata
        say(f"error: {exc}")
        if getattr(args, "debug", False):
            console.print(without_credentials(traceback.format_exc()), highlight=False, markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        say("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
