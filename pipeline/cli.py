"""``rtpipe`` command line. Exit codes: 0 done, 1 a stage failed, 2 bad input, 130 interrupted."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from contextlib import nullcontext
from pathlib import Path

from rich.console import Console

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEMO_SEED = 7

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

Settings come from --config PRESET.yaml, then from the flags given here.
First Ctrl-C: stop reading, finish the frames in flight and finalise the outputs.
Second Ctrl-C: stop at once (outputs are kept only as .partial files).
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
COCO ground truth, run the bundled demo model on it through the full pipeline (default
backend), write the annotated video and the detections, print the run's metrics and the COCO
box and mask mAP against the ground truth.

Files in --out: clip.mp4, ground_truth.json, annotated.mp4, detections.jsonl, metrics.json,
accuracy.json. Seeds from 1,000,000 up were used to train the model; the rest are unseen.
"""

EVAL_HELP = """\
COCO box and mask mAP (pycocotools) of a detections JSONL written by 'rtpipe run --json' against
COCO ground truth (e.g. the ground_truth.json of 'rtpipe demo'). Frames are matched by index,
classes by name; only frames present in the JSONL are scored.
"""

BENCH_HELP = """\
Measure a model in the pipeline, in one run, on one machine:

  engine only   the model alone on preprocessed frames, back to back (no decoding or writing)
  sequential    every stage in one thread, one frame at a time, as a simple script does it
  pipelined     rtpipe's pipeline: a thread per stage, bounded queues, batching

and report FPS of each, efficiency (pipelined / engine only), pipelining gain (pipelined /
sequential), per-stage p50/p95/p99, capture-to-overlay and capture-to-sink latency, dropped
frames, peak RSS (peak GPU memory on CUDA) and the stage that holds the pipeline back. The
timed runs write their outputs (--sink) to a temporary folder that is deleted afterwards.

--sweep KEY=V1,V2 ... measures every combination (keys: model, backend, device, batch, imgsz,
sink, path), prints one table, and with --plot draws one line per configuration.
"""

INFO_HELP = "Print an engine's sidecar: what it is, how it was built and checked, and whether it can run here."


def say(message: str) -> None:
    """One unwrapped line on stderr (errors and notices must stay one line for scripts)."""
    sys.stderr.write(f"rtpipe: {message}\n")
    sys.stderr.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtpipe", description="Real-time detection and segmentation on video.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser("run", help="run a model on a video, camera, stream or images",
                         description=RUN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("source", nargs="*", help="what to read (see above), one or more; may come from --config instead")
    run.add_argument("--config", metavar="YAML", help="preset file with any of the settings below (configs/)")
    run.add_argument("--model", help="ONNX file, .pt checkpoint, built engine (.pt2/.engine), torchvision:<arch>, preset YAML or builtin "
                                     "(default: demo, the bundled model trained on generated driving scenes)")
    run.add_argument("--weights", help="for torchvision:<arch>: a state_dict file, DEFAULT (torchvision's, downloads) or random")
    run.add_argument("--trust-checkpoint", action="store_true", default=None, dest="trust_checkpoint",
                     help="allow unpickling a .pt checkpoint's Python objects (runs code from the file: trusted files only)")
    run.add_argument("--backend", help="runtime: auto, onnxruntime, torch, aoti or tensorrt (default: auto = an engine's own "
                                       "runtime; onnxruntime on the CPU, exporting checkpoints in memory; torch on CUDA). "
                                       "aoti/tensorrt with a checkpoint build an engine on first use and cache it in $RTPIPE_ENGINE_DIR "
                                       "or engines/")
    run.add_argument("--device", help="cpu or cuda[:N] (default cpu)")
    run.add_argument("--conf", type=float, help="minimum detection score, 0..1 (default 0.25)")
    run.add_argument("--iou", type=float, help="NMS IoU threshold, 0..1 (default 0.45)")
    run.add_argument("--imgsz", type=int, help="input size: checked against a fixed-size ONNX; sets it for checkpoints "
                                               "(YOLO: NxN; torchvision: the short side)")
    run.add_argument("--max-det", type=int, dest="max_det", help="detections kept per frame (default 300)")
    run.add_argument("--nms", action="store_true", default=None,
                     help="also run NMS on the outputs of NMS-free models (YOLO26 end-to-end, RT-DETR), which are final without it")
    run.add_argument("--classes", type=int, nargs="+", help="keep only these class ids")
    run.add_argument("--batch", type=int, help="frames per model call (default 1)")
    run.add_argument("--max-latency-ms", type=float, dest="max_latency_ms",
                     help="cut a batch early so its oldest frame is done within this many ms of capture "
                          "(default 100 when a source is live; files: batches fill up)")
    run.add_argument("--frames", type=int, help="stop after reading N frames from the source")
    run.add_argument("--reconnect", type=float, metavar="SECONDS",
                     help="how long a dropped camera or network stream is retried, with backoff, before the run ends "
                          "(default 30; 0: never)")
    run.add_argument("--save", metavar="VIDEO", help="write the annotated video (.mp4, .mkv, .mov)")
    run.add_argument("--json", metavar="JSONL", dest="json", help="write detections, one JSON line per frame")
    run.add_argument("--show", action="store_true", default=None, help="show a window (OpenCV with GUI only)")
    run.add_argument("--serve", metavar="HOST:PORT", help="browser view at http://HOST:PORT/ (host defaults to 127.0.0.1)")
    run.add_argument("--token", help="require ?token=TOKEN for the browser view")
    run.add_argument("--hud", action="store_true", default=None, help="draw FPS and latency on the frames")
    run.add_argument("--metrics-json", metavar="PATH", dest="metrics_json", help="write the run's metrics as JSON")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")
    run.add_argument("--debug", action="store_true", help="show tracebacks")

    b = sub.add_parser("build", help="build an engine (ONNX, AOTInductor .pt2, TensorRT plan) from a checkpoint",
                       description=BUILD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("spec", metavar="SPEC", help="checkpoint (.pt/.pth), torchvision:<arch>, ONNX file or preset YAML")
    b.add_argument("--format", default="onnx", choices=["onnx", "aoti", "tensorrt"], help="engine format (default onnx)")
    b.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"], help="default fp32")
    b.add_argument("--imgsz", type=int, help="input size (default: the checkpoint's; torchvision: the short side)")
    b.add_argument("--batch", default="1", help="N (fixed) or MIN:OPT:MAX (dynamic), default 1")
    b.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where the engine will run (tensorrt: cuda)")
    b.add_argument("--workspace", type=float, metavar="GIB", help="TensorRT workspace limit in GiB")
    b.add_argument("--opt-level", type=int, default=3, dest="opt_level", help="TensorRT builder optimisation level 0-5 (default 3)")
    b.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    b.add_argument("--calib", metavar="PATH", help="int8: calibration frames, a folder of images or a video")
    b.add_argument("--calib-frames", type=int, default=64, dest="calib_frames", help="int8: frames taken from --calib (default 64)")
    b.add_argument("--accept-accuracy-loss", action="store_true", dest="accept_accuracy_loss",
                   help="int8: keep an engine that fails the accuracy check against the fp32 reference")
    b.add_argument("--weights", help="for torchvision:<arch>: a state_dict file, DEFAULT (downloads) or random")
    b.add_argument("--trust-checkpoint", action="store_true", dest="trust_checkpoint",
                   help="allow unpickling a .pt checkpoint's Python objects (trusted files only)")
    b.add_argument("-o", "--out", default="engines", metavar="DIR", help="output folder (default engines/)")
    b.add_argument("--name", help="engine file name without extension (default: STEM-HxW-bBATCH-PRECISION)")
    b.add_argument("--debug", action="store_true", help="show tracebacks")

    d = sub.add_parser("demo", help="generate a clip, run the bundled model on it, score it against the ground truth",
                       description=DEMO_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--seed", type=int, default=DEMO_SEED, help=f"which clip to generate (default {DEMO_SEED})")
    d.add_argument("--frames", type=int, default=300, help="clip length in frames at 30 FPS (default 300)")
    d.add_argument("--size", default="1280x720", metavar="WxH", help="clip size (default 1280x720; the model was trained on 16:9)")
    d.add_argument("--out", default="demo-out", metavar="DIR", help="where the files go (default demo-out/)")
    d.add_argument("--backend", default="auto", help="runtime, as for rtpipe run (default auto)")
    d.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    d.add_argument("--quiet", action="store_true", help="no progress bars and no tables")
    d.add_argument("--debug", action="store_true", help="show tracebacks")

    e = sub.add_parser("eval", help="COCO box and mask mAP of detections (JSONL) against ground truth (COCO JSON)",
                       description=EVAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("predictions", metavar="PRED.jsonl", help="detections from rtpipe run --json")
    e.add_argument("ground_truth", metavar="GT.json", help="COCO ground truth")
    e.add_argument("--json", metavar="PATH", dest="json_out", help="also write the results as JSON")
    e.add_argument("--debug", action="store_true", help="show tracebacks")

    bn = sub.add_parser("bench", help="measure engine-only, sequential and pipelined FPS, per-stage latency and memory",
                        description=BENCH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    bn.add_argument("source", metavar="SOURCE", help="what to read, as for rtpipe run (a file: the first --frames frames)")
    bn.add_argument("--model", default="demo", help="as for rtpipe run (default demo)")
    bn.add_argument("--backend", default="auto", help="auto, onnxruntime, torch, aoti or tensorrt (default auto)")
    bn.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    bn.add_argument("--batch", type=int, default=1, help="frames per model call in engine-only and pipelined runs (default 1)")
    bn.add_argument("--imgsz", type=int, help="input size; a builtin or checkpoint is exported at it (needs torch)")
    bn.add_argument("--frames", type=int, default=300, help="frames per timed run (default 300)")
    bn.add_argument("--warmup", type=int, default=10, help="untimed model calls before timing (default 10)")
    bn.add_argument("--path", default="auto", choices=["auto", "cpu", "gpu"],
                    help="where pre/post-processing run: auto (on the GPU when the model runs on CUDA on torch, aoti or "
                         "tensorrt), cpu (host numpy/OpenCV, to compare), gpu")
    bn.add_argument("--sink", default="jsonl", help="what the timed runs write: none, jsonl, or video (annotated H.264 + jsonl); "
                                                    "default jsonl")
    bn.add_argument("--sweep", nargs="+", metavar="KEY=V1,V2", help="measure every combination, e.g. batch=1,2,4 backend=onnxruntime,aoti")
    bn.add_argument("--json", metavar="PATH", dest="json_out", help="write the report as JSON")
    bn.add_argument("--plot", metavar="PNG", help="draw throughput and latency per configuration (needs matplotlib: rtpipe[bench])")
    bn.add_argument("--weights", help="for torchvision:<arch>, as for rtpipe run")
    bn.add_argument("--trust-checkpoint", action="store_true", dest="trust_checkpoint", help="as for rtpipe run")
    bn.add_argument("--quiet", action="store_true", help="no progress bars and no tables")
    bn.add_argument("--debug", action="store_true", help="show tracebacks")

    info = sub.add_parser("info", help="show what an engine is and whether it runs here", description=INFO_HELP)
    info.add_argument("engine", metavar="ENGINE", help="an engine made by rtpipe build (.onnx, .pt2, .engine) or its .json")
    info.add_argument("--json", action="store_true", help="print the sidecar as JSON")
    info.add_argument("--device", help="check it against this device (default: the one it was built for)")
    return parser


def per_source(path, i: int, n: int):
    """The output file of source ``i`` of ``n``: ``out.mp4`` -> ``out-1.mp4`` (as given when n == 1)."""
    if path is None or n == 1:
        return path
    p = Path(path)
    return p.with_name(f"{p.stem}-{i}{p.suffix}")


def _make_sinks(cfg, sources, model) -> dict[int, list]:
    """The sinks the settings ask for, per source; if one cannot be set up, those made before are closed."""
    from pipeline.sinks import BrowserView, JsonlSink, VideoSink, WindowSink

    n = len(sources)
    sinks: dict[int, list] = {}
    try:
        for i, source in enumerate(sources):
            own = sinks[i] = []
            if cfg.save is not None:
                own.append(VideoSink(per_source(cfg.save, i, n), source.fps, live=source.live))
            if cfg.json_path is not None:
                own.append(JsonlSink(per_source(cfg.json_path, i, n), model.info.names))
        if cfg.show:
            sinks[0].append(WindowSink())
        if cfg.serve is not None:
            host, port = cfg.serve_address()
            sinks[0].append(BrowserView(host, port, token=cfg.token))
    except BaseException:
        for s in (s for own in sinks.values() for s in own):
            s.close(False)
        raise
    return sinks


def _check_paths(cfg) -> None:
    from pipeline.config import ConfigError

    n = len(cfg.sources)
    if n > 1 and (cfg.show or cfg.serve):
        raise ConfigError("--show and --serve show one source: with several sources write --save/--json (one file per source)")
    inputs = {Path(s).expanduser().resolve() for s in cfg.sources if Path(s).exists()}
    outs = [per_source(p, i, n) for p in (cfg.save, cfg.json_path) if p is not None for i in range(n)]
    outs += [cfg.metrics_json] if cfg.metrics_json is not None else []
    for p in outs:
        if Path(p).expanduser().resolve() in inputs:
            raise ConfigError(f"output '{p}' is the input file: choose another output path")
    if len({Path(p).expanduser().resolve() for p in outs}) != len(outs):
        raise ConfigError("two outputs share one path: give --save, --json and --metrics-json different files")


def _weights(spec: str, given: str | None) -> str | None:
    """--weights as load_model and build take it (None: random init); torchvision specs must say which."""
    if spec.startswith("torchvision:") and given is None:
        from pipeline.config import ConfigError

        raise ConfigError(f"{spec} needs --weights: a state_dict file, DEFAULT (torchvision's; downloads) or random")
    return None if given == "random" else given


def cmd_run(args, console: Console) -> int:
    from pipeline.config import build_config

    overrides = {k: getattr(args, k) for k in (
        "source", "model", "weights", "trust_checkpoint", "backend", "device", "conf", "iou", "imgsz", "max_det", "nms", "classes",
        "batch", "max_latency_ms",
        "frames", "reconnect", "save", "json", "show", "serve", "token", "hud", "metrics_json")}
    overrides["source"] = overrides["source"] or None
    cfg = build_config(args.config, overrides)
    if cfg.source is None:
        from pipeline.config import ConfigError

        raise ConfigError("no source: give one, e.g. 'rtpipe run clip.mp4' or 'rtpipe run synthetic:1280x720@30'")
    return run_pipeline(cfg, console, args.quiet, args.debug)


def kept_partial(sinks) -> str:
    """" (partial outputs kept: a.mp4.partial, ...)" for the sinks that left one, else ""."""
    from pipeline.sinks import partial_path

    kept = [partial_path(s.path).name for s in sinks if hasattr(s, "path") and partial_path(s.path).exists()]
    return f" (partial outputs kept: {', '.join(kept)})" if kept else ""


def run_pipeline(cfg, console: Console, quiet: bool, debug: bool) -> int:
    """Run the pipeline ``cfg`` describes, with progress and the metrics table; returns the exit code."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from pipeline.metrics import render_table
    from pipeline.models import load_model
    from pipeline.runtime import Pipeline, SourceFailed, StageError
    from pipeline.sources import open_source

    _check_paths(cfg)
    weights = _weights(cfg.model, cfg.weights)
    model = load_model(cfg.model, backend=cfg.backend, device=cfg.device, conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det,
                       classes=cfg.classes, imgsz=cfg.imgsz, weights=weights, trust_checkpoint=cfg.trust_checkpoint, nms=cfg.nms)
    sources = [open_source(uri, source_id=i, reconnect=cfg.reconnect, device=cfg.device) for i, uri in enumerate(cfg.sources)]
    sinks = _make_sinks(cfg, sources, model)
    all_sinks = [s for own in sinks.values() for s in own]
    for s in all_sinks:
        if hasattr(s, "url"):
            console.print(f"browser view: {s.url}")
    totals = [s.total if cfg.frames is None else min(cfg.frames, s.total or cfg.frames) for s in sources]
    total = None if None in totals else sum(totals)
    progress = None
    if not quiet:
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
        label = cfg.sources[0] if sources[0].live else Path(cfg.sources[0]).name
        task = progress.add_task(label if len(sources) == 1 else f"{len(sources)} sources", total=total)
    pipe = Pipeline(sources, model, sinks, batch=cfg.batch, max_latency_ms=cfg.max_latency_ms,
                    max_frames=cfg.frames, hud=cfg.hud,
                    on_frame=None if progress is None else (lambda n: progress.update(task, completed=n)))
    failed = None
    try:  # from here on the pipeline owns the sinks and closes them
        if progress is not None:
            progress.start()
        metrics = pipe.run()
    except SourceFailed as exc:  # the other sources ran to their end: report them, then fail
        metrics, failed = exc.metrics, exc
    except StageError as exc:
        say(f"error: {exc}{kept_partial(all_sinks)}")
        if debug:
            console.print("".join(traceback.format_exception(exc.error)), highlight=False)
        return EXIT_FAILED
    finally:
        if progress is not None:
            progress.stop()
    if cfg.metrics_json is not None:
        Path(cfg.metrics_json).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    if not quiet:
        console.print(render_table(metrics))
        for i, own in sinks.items():
            for s in own:
                if hasattr(s, "path") and s.path.exists() and not metrics["aborted"]:
                    console.print(f"{'video' if s.needs_image else 'detections'}: {s.path}"
                                  + (f"  (source {i}: {cfg.sources[i]})" if len(sources) > 1 else ""), soft_wrap=True)
    if failed is not None:
        say(f"error: {failed}{kept_partial(all_sinks)}")
        if debug:
            console.print("".join(traceback.format_exception(failed.error)), highlight=False)
        return EXIT_FAILED
    if metrics["aborted"]:
        say("aborted; outputs kept only as .partial files")
        return EXIT_INTERRUPTED
    if metrics["interrupted"]:
        say(f"interrupted after {metrics['frames_out']} frames; the outputs hold those frames")
        return EXIT_INTERRUPTED
    return EXIT_OK


def _size(text: str) -> tuple[int, int]:
    import re

    from pipeline.config import ConfigError

    m = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not m or not (64 <= int(m[1]) <= 7680 and 64 <= int(m[2]) <= 4320) or int(m[1]) % 2 or int(m[2]) % 2:
        raise ConfigError(f"--size {text}: give WIDTHxHEIGHT, even numbers from 64x64 to 7680x4320, e.g. 1920x1080")
    return int(m[1]), int(m[2])


def cmd_demo(args, console: Console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline.config import ConfigError, build_config
    from pipeline.demo.clip import write_clip
    from pipeline.evaluate import evaluate, render_table

    if args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: give at least 1 frame")
    size = _size(args.size)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: give a folder")
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=args.quiet) as progress:
        task = progress.add_task(f"rendering clip {args.seed}", total=args.frames)
        clip, gt = write_clip(out, args.seed, args.frames, size, progress=lambda n: progress.update(task, completed=n))
    if not args.quiet:
        console.print(f"clip: {clip} ({args.frames} frames of {size[0]}x{size[1]}, seed {args.seed}); ground truth: {gt}",
                      highlight=False, soft_wrap=True)
    detections = out / "detections.jsonl"
    cfg = build_config(None, {"source": str(clip), "model": "demo", "backend": args.backend, "device": args.device,
                              "save": str(out / "annotated.mp4"), "json": str(detections), "metrics_json": str(out / "metrics.json")})
    code = run_pipeline(cfg, console, args.quiet, args.debug)
    if code != EXIT_OK:
        return code
    with console.status("scoring the detections against the ground truth (pycocotools)") if not args.quiet else nullcontext():
        result = evaluate(detections, gt)
    (out / "accuracy.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if not args.quiet:
        console.print(render_table(result))
        console.print(f"accuracy: {out / 'accuracy.json'}", highlight=False)
    return EXIT_OK


def cmd_eval(args, console: Console) -> int:
    from pipeline.evaluate import evaluate, render_table

    result = evaluate(args.predictions, args.ground_truth)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    console.print(render_table(result))
    return EXIT_OK


def cmd_build(args, console: Console) -> int:
    import time

    from pydantic import ValidationError

    from pipeline.build import BuildOptions, build
    from pipeline.config import ConfigError, explain

    try:
        options = BuildOptions(**{k: getattr(args, k) for k in (
            "format", "precision", "imgsz", "batch", "device", "workspace", "opt_level", "opset", "calib", "calib_frames",
            "accept_accuracy_loss")})
    except ValidationError as exc:
        raise ConfigError(explain(exc, "command line")) from None
    weights = _weights(args.spec, args.weights)
    started = time.perf_counter()
    with console.status(f"building {args.spec}") as status:
        def progress(step: str) -> None:
            status.update(f"[bold]{args.spec}[/] [{time.perf_counter() - started:5.1f} s] {step}")
            if step.startswith("warning:"):
                say(step)

        engine = build(args.spec, options, args.out, weights, args.trust_checkpoint, args.name, progress)
    console.print(f"built {engine} in {time.perf_counter() - started:.1f} s (metadata: {engine.with_suffix('.json')})",
                  highlight=False, soft_wrap=True)
    return EXIT_OK


def _check_outputs(*paths: str | None) -> None:
    from pipeline.config import ConfigError

    given = [Path(p).expanduser() for p in paths if p is not None]
    for p in given:
        if p.is_dir() or not p.parent.is_dir():
            raise ConfigError(f"output '{p}': give a file name in an existing folder")
    if len({p.resolve() for p in given}) != len(given):
        raise ConfigError("--json and --plot share one path: give them different files")


def cmd_bench(args, console: Console) -> int:
    import shlex

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline.bench import expand, load, make_config, choose_path, measure, parse_sweep
    from pipeline.bench.plot import require_matplotlib, save_plot
    from pipeline.bench.report import render_report, render_sweep
    from pipeline.bench.system import machine
    from pipeline.sinks import write_complete

    _check_outputs(args.json_out, args.plot)
    if args.plot:
        require_matplotlib()
    base = {k: getattr(args, k) for k in ("source", "model", "backend", "device", "batch", "imgsz", "frames", "warmup", "sink", "path")}
    base.update(weights=None if args.weights == "random" else args.weights, trust_checkpoint=args.trust_checkpoint)
    axes = parse_sweep(args.sweep) if args.sweep else {}
    configs = expand(base, axes) if axes else [make_config(base)]
    for cfg in configs:
        _weights(cfg.model, args.weights)  # torchvision specs must say which weights
    labels = [c.label(tuple(axes)) for c in configs] if axes else [configs[0].label()]
    command = shlex.join(["rtpipe", *sys.argv[1:]])
    models, reports = {}, []
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=args.quiet) as bar:
        def key(cfg):  # what makes a different model; batch and sink do not
            return cfg.model, cfg.backend, cfg.device, cfg.imgsz

        for cfg in configs:  # load every model first: a bad configuration fails before hours of timing
            if key(cfg) not in models:
                task = bar.add_task(f"loading {cfg.model} ({cfg.backend}, {cfg.device}, imgsz {cfg.imgsz or 'default'})", total=None)
                models[key(cfg)] = load(cfg)
                bar.remove_task(task)
            choose_path(models[key(cfg)], cfg.path)  # a path this backend cannot take fails now, not after timing
        for cfg, label in zip(configs, labels):
            def phase(name: str, total: int | None, label=label):
                task = bar.add_task(f"{label}: {name}" if axes else name, total=total)
                return lambda done: bar.update(task, completed=done)

            reports.append(measure(cfg, models[key(cfg)], command, phase))
    if axes:
        result = {"command": command, "machine": machine(configs[0].device), "sweep": axes,
                  "configs": [{"label": label, **r} for label, r in zip(labels, reports)]}
    else:
        result = reports[0]
    if args.json_out:
        write_complete(args.json_out, json.dumps(result, indent=2) + "\n")
    if args.plot:
        m = reports[0]["machine"]
        save_plot(reports, labels, args.plot, f"{configs[0].source} · {m['cpu']}, {m['cores']} cores" + (f" · {m['gpu']}" if m["gpu"] else ""))
    if not args.quiet:
        if axes:
            console.print(render_sweep(reports, labels))
        else:
            for table in render_report(reports[0]):
                console.print(table)
        for label, p in (("report", args.json_out), ("plot", args.plot)):
            if p:
                console.print(f"{label}: {p}", highlight=False)
    return EXIT_OK


def cmd_info(args, console: Console) -> int:
    from pipeline.build.sidecar import problems, read

    path = Path(args.engine)
    if path.suffix == ".json":
        path = next((p for p in (path.with_suffix(s) for s in (".pt2", ".engine", ".plan", ".onnx")) if p.exists()), path.with_suffix(".onnx"))
    record = read(path)
    if args.json:
        print(json.dumps(record, indent=2))
        return EXIT_OK
    from pipeline.build.info import render

    console.print(render(path, record, problems(record, path, args.device or record.get("device"))), highlight=False)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    warnings.showwarning = lambda message, *_a, **_k: say(f"warning: {message}")
    from pipeline.build.options import BuildError, CheckFailed
    from pipeline.build.sidecar import SidecarError
    from pipeline.config import ConfigError
    from pipeline.evaluate import EvalError
    from pipeline.models import ModelError
    from pipeline.sinks import SinkError
    from pipeline.sources import SourceError

    try:
        commands = {"run": cmd_run, "demo": cmd_demo, "eval": cmd_eval, "build": cmd_build, "bench": cmd_bench, "info": cmd_info}
        return commands[args.command](args, console)
    except CheckFailed as exc:
        say(f"error: {exc}")
        return EXIT_FAILED
    except (ConfigError, ModelError, SourceError, SinkError, BuildError, SidecarError, EvalError) as exc:
        say(f"error: {exc}")
        if getattr(args, "debug", False):
            console.print(traceback.format_exc(), highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        say("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
