"""Capture to re-streamed frame: how late a viewer of ``restream`` sees a frame.

    python benchmarks/restream_latency.py --seconds 30 --out benchmarks/results/restream-latency.json

A live synthetic stream (--size at --fps) through the service (demo model, a counting line),
re-streamed into a local rtsp-server-perl; a client in this process reads it back with PyAV
(FFmpeg's RTSP demuxer over UDP, ``fflags=nobuffer``, ``max_delay=0``) and decodes every frame.
Each frame's index is stamped into its picture (a 16-bit code of 16x16-pixel blocks, top left)
just before it is encoded, so the client knows which capture it is looking at, wherever it
joined: latency = decoded at the client - captured (one monotonic clock, one process).
Needs rtsp-server-perl (Debian) on the PATH.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.service import Service, ServiceConfig, streams  # noqa: E402
from pipeline.service.restream import Restream  # noqa: E402
from tests.conftest import Publisher  # noqa: E402

BITS, BLOCK = 16, 16
captured: dict[int, float] = {}


class Stamped(Restream):
    def write(self, frame, detections, image):
        img = (frame.image if image is None else image).copy()
        code = frame.index % (1 << BITS)
        for b in range(BITS):
            img[:BLOCK, b * BLOCK:(b + 1) * BLOCK] = 255 if code >> b & 1 else 0
        captured[code] = frame.captured_at
        super().write(frame, detections, img)


def read_code(img: np.ndarray) -> int:
    return sum(1 << b for b in range(BITS) if img[2:BLOCK - 2, b * BLOCK + 2:(b + 1) * BLOCK - 2].mean() > 128)


def main() -> int:
    import av

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    streams.Restream = Stamped
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = Publisher(Path(tmp) / "unused.mp4", "rtsp")
        server.start_server()
        time.sleep(1.0)
        service = Service(ServiceConfig(outputs=Path(tmp) / "out", spool=Path(tmp) / "spool"), destinations=[])
        service.start()
        sid = service.add({"source": f"synthetic:{args.size}@{args.fps}", "name": "cam", "lines": ["0,0.5,1,0.5"],
                           "restream": f"rtsp://127.0.0.1:{server.server_port}/live"})
        while (service.get(sid)["restream"] or {}).get("sent", 0) < args.fps:
            time.sleep(0.1)
        stop = time.monotonic() + args.seconds
        client = av.open(server.url, options={"fflags": "nobuffer", "max_delay": "0"}, timeout=10)
        for frame in client.decode(video=0):
            now = time.monotonic()
            code = read_code(frame.to_ndarray(format="gray"))
            if code in captured:
                latencies.append((now - captured[code]) * 1000)
            if now > stop:
                break
        client.close()
        status = service.get(sid)
        service.stop()
        server.kill_server()
    lat = np.array(latencies)
    result = {"command": " ".join(sys.argv), "size": args.size, "fps": args.fps, "frames_matched": len(lat),
              "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                             "max": round(float(lat.max()), 1)},
              "pipeline_latency_ms_last": status["latency_ms"], "restream": status["restream"]}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
