"""Soak with faults: `rtpipe run` on a live stream that flaps every 5 minutes plus a looping one,
saving video and JSONL, for hours; memory, descriptors, threads and the timeline sampled.

    python benchmarks/soak_flapping.py --seconds 7200 --out benchmarks/results/soak-flapping-2h.json

Two sources, both served on 127.0.0.1 by ffmpeg from a generated clip (320x240, 25 FPS,
``-re -stream_loop -1``, so they never end):

- ``rtsp://`` through rtsp-server-perl, which flaps every ``--flap-every`` seconds, in turn:
  the server and its publisher are killed and started again ``--outage`` seconds later (a
  camera that reboots: the stream drops, connections are refused), or the publisher is frozen
  (SIGSTOP) for ``--outage`` seconds and resumed (the stream stalls, then lets out its backlog
  in a burst). (A publisher restarted on a server that stayed up is not served to new readers
  by rtsp-server-perl 0.06, with or without rtpipe: not used here.)
- ``tcp://`` (MPEG-TS), steady.

The run is the CLI as a user types it (``--model tiny-seg --save out.mp4 --json out.jsonl
--metrics-json m.json``), stopped with SIGINT at the end. Every ``--every`` seconds: the
process's RSS, open descriptors and threads, and per source the JSONL's frames and last pts
(cumulative). At the end: each saved video's duration (ffprobe) against the wall time it
covers (the run's, less an outage still open when it was stopped), the outages the metrics report against the ones
caused, and the exit code. Writes one JSON object (also to --out).

Do not run it beside the test suite's RTSP tests: every rtsp-server-perl takes its RTP ports
from 20000 up, so a second one at the same time relays nothing (the tests then fail).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def publish(clip: Path, out: list[str]) -> subprocess.Popen:
    return subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "quiet", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy", *out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def proc_stats(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1), "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def jsonl_tail(path: Path) -> tuple[int, float | None]:
    """(lines, pts of the last whole line) of a JSONL being written."""
    if not path.exists():
        return 0, None
    data = path.read_bytes()
    lines = data.count(b"\n")
    if not lines:
        return 0, None
    last = data[: data.rindex(b"\n")].rsplit(b"\n", 1)[-1]
    return lines, json.loads(last)["pts"]


def video_seconds(path: Path) -> float:
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                       capture_output=True, text=True, check=True)
    return float(r.stdout.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=7200)
    ap.add_argument("--flap-every", type=float, default=300)
    ap.add_argument("--outage", type=float, default=15)
    ap.add_argument("--every", type=float, default=30, help="seconds between samples")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    for tool in ("ffmpeg", "ffprobe", "rtsp-server-perl"):
        if shutil.which(tool) is None:
            sys.exit(f"soak_flapping: needs {tool} (apt install ffmpeg rtsp-server-perl)")
    from tests.conftest import free_port, make_clip, wait_for_port

    tmp = Path(tempfile.mkdtemp(prefix="rtpipe-soak-"))
    clip = make_clip(tmp / "clip.mp4", frames=250, size=(320, 240), fps=25)
    rtsp_port, rtsp_source_port, tcp_port = free_port(), free_port(), free_port()
    def serve() -> subprocess.Popen:
        server = subprocess.Popen(["rtsp-server-perl", "-c", str(rtsp_port), "-s", str(rtsp_source_port), "-l", "0"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(rtsp_source_port)
        return server

    server = serve()
    flapping_out = ["-f", "rtsp", f"rtsp://127.0.0.1:{rtsp_source_port}/live"]
    flapping = publish(clip, flapping_out)
    steady = publish(clip, ["-f", "mpegts", f"tcp://127.0.0.1:{tcp_port}?listen=1"])
    time.sleep(3)
    out, js, mj = tmp / "out.mp4", tmp / "out.jsonl", tmp / "m.json"
    run = subprocess.Popen([sys.executable, "-m", "pipeline", "run", f"rtsp://127.0.0.1:{rtsp_port}/live", f"tcp://127.0.0.1:{tcp_port}",
                            "--model", "tiny-seg", "--save", str(out), "--json", str(js), "--metrics-json", str(mj), "--quiet"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    partials = [tmp / f"out-{i}.jsonl.partial" for i in range(2)]
    samples, faults = [], []
    next_sample, next_flap, kind = started, started + args.flap_every, "drop"
    try:
        while time.monotonic() - started < args.seconds and run.poll() is None:
            now = time.monotonic()
            if now >= next_flap:
                fault = {"at_s": round(now - started, 1), "kind": kind, "seconds": args.outage}
                if kind == "drop":
                    for p in (flapping, server):
                        p.kill()
                        p.wait()
                    time.sleep(args.outage)
                    server = serve()
                    flapping = publish(clip, flapping_out)
                else:
                    os.kill(flapping.pid, signal.SIGSTOP)
                    time.sleep(args.outage)
                    os.kill(flapping.pid, signal.SIGCONT)
                faults.append(fault)
                kind = "stall" if kind == "drop" else "drop"
                next_flap += args.flap_every
            if now >= next_sample:
                sample = {"t_s": round(now - started, 1), **proc_stats(run.pid)}
                for i, p in enumerate(partials):
                    lines, pts = jsonl_tail(p)
                    sample[f"source{i}"] = {"frames": lines, "pts_s": pts}
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                next_sample += args.every
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=120)
    finally:
        for p in (flapping, steady, server):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait()
    metrics = json.loads(mj.read_text()) if mj.exists() else None
    videos = []
    for i in range(2):  # the run's wall time, less an outage still open when it was stopped (the video ends at its last frame)
        path = tmp / f"out-{i}.mp4"
        source = metrics["sources"][i] if metrics else {}
        open_gap = sum(g["seconds"] for g in source.get("gaps", []) if g.get("ended") is False)
        wall = None if metrics is None else metrics["wall_s"] - open_gap
        video = round(video_seconds(path), 2) if path.exists() else None
        videos.append({"source": i, "video_s": video, "covered_wall_s": None if wall is None else round(wall, 2),
                       "difference_s": None if None in (video, wall) else round(video - wall, 2),
                       "jsonl_frames": jsonl_tail(tmp / f"out-{i}.jsonl")[0]})
    warm = [s for s in samples if s["t_s"] >= min(600, args.seconds / 5)]
    result = {
        "benchmark": "soak_flapping", "seconds": args.seconds, "flap_every_s": args.flap_every, "outage_s": args.outage,
        "exit_code": run.returncode, "stderr_tail": err.strip().splitlines()[-8:],
        "rss_mb": {"after_warmup": warm[0]["rss_mb"] if warm else None, "end": samples[-1]["rss_mb"] if samples else None,
                   "max": max((s["rss_mb"] for s in warm), default=None)},
        "fds": {"min": min((s["fds"] for s in warm), default=None), "max": max((s["fds"] for s in warm), default=None)},
        "threads": {"min": min((s["threads"] for s in warm), default=None), "max": max((s["threads"] for s in warm), default=None)},
        "videos": videos, "faults": faults,
        "gaps_reported": None if metrics is None else [s.get("gaps") for s in metrics["sources"]],
        "frames_out": None if metrics is None else metrics["frames_out"],
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()},
        "samples": samples,
    }
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if run.returncode == 130 and metrics is not None else 1


if __name__ == "__main__":
    sys.exit(main())
