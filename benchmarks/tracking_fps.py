"""End-to-end FPS on the demo clip without tracking and with each tracker, in one run.

    python benchmarks/tracking_fps.py [--frames 300] [--rounds 2] [--video] [--json PATH]

The demo clip (seed 7, 1280x720) is generated once; then the demo model runs through the whole
pipeline on it, writing JSONL (and with --video the annotated H.264 as rtpipe demo does), once
per condition per round, conditions alternating so that drift on a shared machine hits them
alike: no tracking; each tracker with the demo's counting line and events. Reports FPS per run,
the median per condition, the ratio to no tracking, and the track stage's mean ms per frame.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path


def main() -> None:
    from pipeline.demo.clip import DEMO_LINES, write_clip
    from pipeline.runtime.session import Session

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--video", action="store_true", help="also write the annotated video, as rtpipe demo does")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    conditions = {"none": {}, "bytetrack": {"track": "bytetrack", "lines": DEMO_LINES},
                  "botsort": {"track": "botsort", "lines": DEMO_LINES}}
    runs: dict[str, list[dict]] = {name: [] for name in conditions}
    with tempfile.TemporaryDirectory() as tmp:
        clip, _ = write_clip(tmp, 7, args.frames)
        for r in range(args.rounds):
            for name, extra in conditions.items():
                out = Path(tmp) / f"{name}-{r}"
                settings = {"source": str(clip), "model": "demo", "json": f"{out}.jsonl", **extra}
                if extra:
                    settings["events"] = f"{out}-events.jsonl"
                if args.video:
                    settings |= {"save": f"{out}.mp4", **({"trails": 30} if extra else {})}
                m = Session.from_settings(**settings).run(handle_sigint=False)
                track = m["stages"].get("track", {}).get("mean_ms")
                runs[name].append({"fps": round(m["fps"], 2), "track_ms": track})
                print(f"round {r}: {name:9s} {m['fps']:6.1f} FPS" + (f", track stage {track:.2f} ms/frame" if track else ""),
                      flush=True)
    base = statistics.median(x["fps"] for x in runs["none"])
    summary = {name: {"median_fps": statistics.median(x["fps"] for x in rs),
                      "ratio_to_none": round(statistics.median(x["fps"] for x in rs) / base, 3), "runs": rs}
               for name, rs in runs.items()}
    for name, s in summary.items():
        print(f"{name:9s} median {s['median_fps']:6.1f} FPS, {s['ratio_to_none']:.3f} x no tracking")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": "python benchmarks/tracking_fps.py" + (" --video" if args.video else ""),
                                               "machine": platform.processor() or platform.machine(), "frames": args.frames,
                                               "rounds": args.rounds, "results": summary}, indent=1))


if __name__ == "__main__":
    main()
