"""Trackers on the crossings clips: look-alikes that cross, stop, hide and come and go, scored against exact identities.

    python benchmarks/crossings.py [--seeds 1 2 3] [--sizes 1280x720 960x720 540x960] [--frames 300]
        [--tracker bytetrack botsort] [--set minimum_iou_threshold=0.1,0.3 ...] [--json out.json]

Each clip (``pipeline.demo.crossings``, one per seed and size) is generated and the demo model run
on it once (rtpipe run at conf 0.05, JSONL, no tracking); then every tracker and combination of
the given settings is replayed over the recorded detections frame by frame, as the pipeline runs
it (``tracking_accuracy.replay``, with the clip's frames), and scored: HOTA, MOTA, IDF1 and ID
switches (``pipeline.tracking.accuracy``), and at the clip's true crossings the identity
exchanges and new ids (``pipeline.tracking.exchanges``). Prints the mean over the clips per
tracker and settings; ``--json`` keeps the per-clip numbers too.

For another script (more trackers, say): ``make_clips(seeds, sizes, frames, tmp)`` gives the clips
with their recorded detections and ground truth, ``score(records, gt, crossings, image_of)``
scores one tracked replay of one clip.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from tracking_accuracy import replay  # noqa: E402  (a sibling script, not a package)

CONF = 0.05  # the detector's threshold for the recording; trackers filter higher (``conf`` setting, 0.25)
COLUMNS = ("HOTA", "MOTA", "IDF1", "IDSW", "crossings", "exchanges", "new_ids")


def make_clips(seeds, sizes, frames: int, tmp: str | Path, model: str = "demo") -> list[dict]:
    """Write a crossings clip per seed and size under ``tmp`` and run ``model`` on each (a clip
    and its detections already there from an earlier call with the same arguments are reused).

    Returns one record per clip: ``{"seed", "size": (w, h), "folder", "clip", "gt_path", "gt"
    (COCO dict), "crossings" (the loaded crossings.json), "records" (the demo model's JSONL
    records, conf >= 0.05, no tracker ids), "image_of" (frame index -> COCO image id)}``.
    """
    from pipeline.demo.crossings import write_crossing_clip
    from pipeline.runtime.session import Session

    clips = []
    for seed, (w, h) in itertools.product(seeds, sizes):
        folder = Path(tmp) / f"{seed}_{w}x{h}_{frames}" / Path(model).stem
        done = folder / "d.jsonl"
        if done.exists():
            clip, gt_path = folder / "clip.mp4", folder / "ground_truth.json"
        else:
            clip, gt_path = write_crossing_clip(folder, seed, frames, (w, h))
            Session.from_settings(source=str(clip), model=model, conf=CONF, json=str(folder / "d.partial.jsonl")).run(handle_sigint=False)
            (folder / "d.partial.jsonl").rename(done)
        gt = json.loads(gt_path.read_text())
        clips.append({"seed": seed, "size": (w, h), "folder": folder, "clip": clip, "gt_path": gt_path, "gt": gt,
                      "crossings": json.loads((folder / "crossings.json").read_text()),
                      "records": [json.loads(x) for x in (folder / "d.jsonl").read_text().splitlines()],
                      "image_of": {im["frame_index"]: im["id"] for im in gt["images"]}})
    return clips


def score(records: list[dict], gt: dict, crossings: dict, image_of: dict[int, int]) -> dict:
    """One tracked run of one clip: HOTA, MOTA, IDF1, IDSW (all classes, detection-weighted) and,
    at its true crossings, how many there are, how many the tracker exchanged ids at and at how
    many it gave a new id; ``per_crossing`` as ``identity_exchanges`` gives it."""
    from pipeline.tracking.accuracy import tracking_accuracy
    from pipeline.tracking.exchanges import identity_exchanges

    t = tracking_accuracy(records, gt, image_of) or {k: 0.0 for k in ("HOTA", "MOTA", "IDF1", "IDSW")}
    x = identity_exchanges(records, gt, crossings, image_of)
    return {**{k: t[k] for k in ("HOTA", "MOTA", "IDF1", "IDSW")},
            **{k: x[k] for k in ("crossings", "exchanges", "new_ids")}, "per_crossing": x["per_crossing"]}


def summary(scores: list[dict]) -> dict:
    """The mean of the rates and the sum of the counts over clips."""
    return {k: (sum(s[k] for s in scores) if k in ("IDSW", "crossings", "exchanges", "new_ids")
                else round(float(np.mean([s[k] for s in scores])), 4)) for k in COLUMNS}


def print_table(rows: list[dict]) -> None:
    head = f"{'tracker':<22} {'settings':<28}" + "".join(f"{k:>10}" for k in COLUMNS)
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['tracker']:<22} {json.dumps(r['settings']):<28}" + "".join(f"{r['total'][k]:>10}" for k in COLUMNS))


def parse_grid(specs: list[str]) -> list[dict]:
    """``["key=v1,v2", ...]`` -> every combination of the values, as settings dicts ([{}] for none)."""
    def value(v: str):
        return v if v.isalpha() else float(v) if "." in v else int(v)

    grid = {k: [value(v) for v in vs.split(",")] for k, vs in (s.split("=") for s in specs)}
    return [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())] or [{}]


def main() -> None:
    from pipeline.demo.clip import parse_size
    from pipeline.demo.scenes import CLASSES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--sizes", nargs="+", default=["1280x720"], help="WIDTHxHEIGHT of each clip")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--tracker", nargs="+", default=["bytetrack", "botsort"],
                    help="rtpipe's trackers, or ultralytics-bytetrack / ultralytics-botsort (model.track's stock configs at "
                         "its conf 0.1, --set not applied; needs ultralytics)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=V1,V2",
                    help="tracker settings to try, conf (the detector's score threshold, default 0.25) and reid (an "
                         "appearance spec, see --reid)")
    ap.add_argument("--json", help="write the table, per clip too, as JSON")
    ap.add_argument("--model", default="demo", help="the detector (default demo)")
    ap.add_argument("--keep", metavar="DIR", help="keep the clips and their detections in DIR and reuse them on the next run")
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes]
    if any(t.startswith("ultralytics-") for t in args.tracker):
        from ultralytics_trackers import MODEL_TRACK_CONF, register

        register()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        clips = make_clips(args.seeds, sizes, args.frames, args.keep or scratch, args.model)
        for name, settings in itertools.product(args.tracker, parse_grid(args.set)):
            if name.startswith("ultralytics-"):  # model.track's own detector threshold and stock config
                if settings != parse_grid(args.set)[0]:
                    continue
                settings = {"conf": MODEL_TRACK_CONF}
            per_clip = []
            for c in clips:
                tracked, _ = replay(c["records"], CLASSES, name, settings, [], c["size"], c["clip"])
                per_clip.append({"seed": c["seed"], "size": list(c["size"]),
                                 **score(tracked, c["gt"], c["crossings"], c["image_of"])})
            rows.append({"tracker": name, "settings": settings, "total": summary(per_clip), "per_clip": per_clip})
            print(name, json.dumps(settings), " ".join(f"{k} {v}" for k, v in rows[-1]["total"].items()), flush=True)
    print()
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "model": args.model, "seeds": args.seeds,
                                               "sizes": args.sizes, "frames": args.frames,
                                               "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
