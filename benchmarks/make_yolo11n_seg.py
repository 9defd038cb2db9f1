"""Export a random-init YOLO11n-seg to ONNX for speed benchmarks (offline; needs ultralytics).

    python benchmarks/make_yolo11n_seg.py --imgsz 640 --out yolo11n-seg-640.onnx

The network is Ultralytics' own ``yolo11n-seg.yaml`` with its own initialisation (seed 0) and
its own ONNX export, so its cost is YOLO11n-seg's. Untrained, its class scores sit at the head's
prior (about 0.01), so at the default threshold it finds nothing: runs with it measure decoding,
the engine and writing, not mask drawing (see benchmarks/postprocess_cost.py for that cost).
Install ultralytics in a separate venv: it pulls opencv-python over the headless build.
"""

import argparse
import shutil
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--out", type=Path, default=Path("yolo11n-seg-640.onnx"))
    args = ap.parse_args()
    from ultralytics import YOLO

    torch.manual_seed(0)
    yolo = YOLO("yolo11n-seg.yaml", task="segment")
    pt = args.out.with_suffix(".pt")
    yolo.save(str(pt))
    exported = Path(YOLO(str(pt)).export(format="onnx", imgsz=args.imgsz, simplify=False, dynamic=False, opset=17))
    shutil.move(exported, args.out)
    pt.unlink()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
