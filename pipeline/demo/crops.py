"""Labelled crops from the demo scenes, for fine-tuning a crop classifier: cars by body colour.

    python -m pipeline.demo.crops OUT [--seeds A-B] [--frames N]

Writes ``OUT/<colour>/<seed>-<k>.png`` (the k-th crop of clip ``seed``), a folder per class (what ``rtpipe finetune``
reads). A car's colour is the channel its body paint is strongest in (red, green or blue); cars
whose paint has no clear strongest channel (within 40 levels), or that show fewer than 400
pixels, are left out. A car gives a crop every ``EVERY`` frames (it grows, shrinks and moves
between them); crops of different clips are different cars (hold back whole clips to test).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from pipeline.demo.scenes import CAR, Scene

COLOURS = ("blue", "green", "red")  # by the strongest BGR channel
MARGIN, MIN_AREA, EVERY = 40, 400, 10


def colour_of(bgr: tuple[int, int, int]) -> str | None:
    """The name of the strongest channel of a BGR paint, or None when no channel is clearly so."""
    order = np.argsort(bgr)[::-1]
    return COLOURS[order[0]] if bgr[order[0]] - bgr[order[1]] >= MARGIN else None


def car_crops(seed: int, frames: int, size: tuple[int, int] = (1280, 720)) -> list[tuple[np.ndarray, str]]:
    """(BGR crop, colour) of the clearly coloured cars of the clip ``seed``, every ``EVERY`` frames."""
    scene = Scene(seed, *size)
    seen: dict[int, int] = {}  # car id -> the frame of its last crop
    out = []
    for f in range(frames):
        paint = {t.id: t.colors[0] for t in scene.things if t.kind == CAR}
        shot = scene.render_next()
        for inst in shot.instances:
            colour = colour_of(paint.get(inst.id, (0, 0, 0))) if inst.category == CAR else None
            if colour is None or f - seen.get(inst.id, -EVERY) < EVERY or inst.crowd or inst.area < MIN_AREA:
                continue
            x1, y1, x2, y2 = inst.box
            out.append((shot.image[y1:y2, x1:x2].copy(), colour))
            seen[inst.id] = f
    return out


def write_crops(out: str | Path, seeds: list[int], frames: int) -> dict[str, int]:
    """Crops of the clips ``seeds`` into ``out/<colour>/``; returns the count per colour."""
    out = Path(out)
    counts = dict.fromkeys(COLOURS, 0)
    for seed in seeds:
        for k, (crop, colour) in enumerate(car_crops(seed, frames)):
            (out / colour).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / colour / f"{seed}-{k}.png"), crop)
            counts[colour] += 1
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="labelled car crops (by colour) from the demo scenes")
    ap.add_argument("out")
    ap.add_argument("--seeds", default="0-9", help="clips, e.g. 0-9 (default)")
    ap.add_argument("--frames", type=int, default=150, help="frames per clip (default 150)")
    args = ap.parse_args(argv)
    lo, _, hi = args.seeds.partition("-")
    print(write_crops(args.out, list(range(int(lo), int(hi or lo) + 1)), args.frames))


if __name__ == "__main__":
    main()
