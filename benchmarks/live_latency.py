"""A live source faster than the model: end-to-end latency, drops and memory over a run.

    python benchmarks/live_latency.py --fps 60 --model-ms 100 --seconds 20

A synthetic camera at --fps feeds the bundled model slowed to --model-ms per call. Reports the
capture-to-sink latency percentiles (as a multiple of the model latency), the fraction of
frames dropped, and RSS after warm-up vs at the end. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bench.system import rss_mb  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.models import Model  # noqa: E402
from pipeline.runtime import Pipeline  # noqa: E402
from pipeline.sinks import JsonlSink  # noqa: E402
from pipeline.sources import open_source  # noqa: E402


class Slowed(Model):
    def __init__(self, base: Model, seconds: float):
        super().__init__(base.backend, base.decoder, base.info)
        self.seconds = seconds

    def infer(self, batch):
        t0 = time.perf_counter()
        out = super().infer(batch)
        time.sleep(max(0.0, self.seconds - (time.perf_counter() - t0)))
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fps", type=int, default=60)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--model-ms", type=float, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    model = Slowed(load_model("tiny-seg"), args.model_ms / 1000)
    source = open_source(f"synthetic:{args.size}@{args.fps}")
    tmp = tempfile.TemporaryDirectory()
    pipe = Pipeline(source, model, [JsonlSink(Path(tmp.name) / "live.jsonl", model.info.names)])
    rss = {}
    threading.Timer(args.seconds / 4, lambda: rss.setdefault("after_warmup_mb", round(rss_mb(), 1))).start()
    threading.Timer(args.seconds, pipe.drain).start()
    m = pipe.run(handle_sigint=False)
    rss["end_mb"] = round(rss_mb(), 1)
    e2e = m["e2e_latency"]
    produced = m["frames_in"] + source.drops
    print(json.dumps({
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "frames_out": m["frames_out"], "dropped": m["dropped"], "dropped_fraction": round(m["dropped"] / produced, 3),
        "e2e_p50_ms": e2e["p50_ms"], "e2e_p95_ms": e2e["p95_ms"], "e2e_p99_ms": e2e["p99_ms"],
        "p95_over_model": round(e2e["p95_ms"] / args.model_ms, 2), **rss,
    }, indent=2))


if __name__ == "__main__":
    main()
