"""A folder of demo dashcam recordings, to try a batch job on (``rtpipe run DIR --out OUT``):

    python -m pipeline.demo.drives recordings/ --count 4 --frames 150

Each is a generated driving clip (``pipeline.demo.clip``; seeds from ``--first-seed``), named
``drive-NN.mp4``; their ground truth is not kept.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pipeline.demo.clip import parse_size, write_clip


def write_drives(folder: str | Path, count: int, frames: int, size: tuple[int, int] = (1280, 720), first_seed: int = 100) -> list[Path]:
    """``count`` clips of ``frames`` frames in ``folder`` (created): drive-00.mp4, drive-01.mp4, ..."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(count):
        scratch = folder / f".drive-{k:02d}"
        clip, _ = write_clip(scratch, first_seed + k, frames, size)
        out.append(clip.replace(folder / f"drive-{k:02d}.mp4"))
        shutil.rmtree(scratch)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--count", type=int, default=4, help="how many clips (default 4)")
    ap.add_argument("--frames", type=int, default=150, help="frames each, at 30 FPS (default 150)")
    ap.add_argument("--size", default="1280x720", help="WxH (default 1280x720)")
    ap.add_argument("--first-seed", type=int, default=100, help="seed of the first clip (default 100)")
    args = ap.parse_args(argv)
    try:
        size = parse_size(args.size)
    except ValueError as exc:  # (ConfigError)
        ap.error(str(exc))
    if args.count < 1 or args.frames < 1:
        ap.error("--count and --frames: give 1 or more")
    for p in write_drives(args.folder, args.count, args.frames, size, args.first_seed):
        print(p)


if __name__ == "__main__":
    main()
