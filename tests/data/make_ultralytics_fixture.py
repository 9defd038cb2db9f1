"""Make the Ultralytics fixture the yolo tests use (needs ``pip install ultralytics``; offline).

    python tests/data/make_ultralytics_fixture.py tests/data [--reference-only]

writes, from a seeded random-init YOLO11n-seg built from Ultralytics' bundled yaml:
- yolo11n-seg-320.pt    the checkpoint, as Ultralytics saves it (pickled classes)
- yolo11n-seg-320.onnx  Ultralytics' own ONNX export at 320x320
- yolo11n-seg-320.reference.json  Ultralytics' predictor on the ONNX, on the scene image below:
  boxes, scores, classes, and masks as COCO RLE in frame pixels (retina_masks=True)

``--reference-only`` keeps the committed ONNX and rewrites only the reference (after a change
to the scene image).

The convolutions are re-drawn (seeded) with unit gain: a fresh model's scores all sit at the
same near-zero prior, which makes any comparison a matter of ties. Architecture and export are
Ultralytics' own.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

CONF, IOU, IMGSZ, GAIN, CLS_GAIN = 0.95, 0.45, 320, 2.0, 60.0


def scene_image() -> np.ndarray:
    from pipeline.sources import SyntheticScene

    return SyntheticScene(480, 270, 7).render(4)


def as_reference(res) -> dict:
    """An Ultralytics Results -> boxes, scores, classes and masks (COCO RLE in frame pixels)."""
    from pycocotools import mask as coco_mask

    masks = res.masks.data.numpy().astype(np.uint8) if res.masks is not None else np.zeros((0, 1, 1), np.uint8)
    rles = [coco_mask.encode(np.asfortranarray(m)) for m in masks]
    return {
        "xyxy": res.boxes.xyxy.numpy().tolist(), "scores": res.boxes.conf.numpy().tolist(),
        "classes": res.boxes.cls.numpy().astype(int).tolist(),
        "masks": [{"size": r["size"], "counts": r["counts"].decode()} for r in rles],
    }


def main(out: Path) -> None:
    from ultralytics import YOLO

    torch.manual_seed(0)
    yolo = YOLO("yolo11n-seg.yaml", task="segment")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # weights with unit gain, so features keep their scale through the layers
        for mod in yolo.model.modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * (GAIN / mod.weight[0].numel()) ** 0.5)
        for seq in yolo.model.model[-1].cv3:
            seq[-1].bias.zero_()  # the class prior (about -10) would keep every score near 0
            seq[-1].weight.mul_(CLS_GAIN)  # and the class logits spread over a few units
    pt = out / "yolo11n-seg-320.pt"
    yolo.save(str(pt))
    onnx_path = Path(YOLO(str(pt)).export(format="onnx", imgsz=IMGSZ, simplify=False, dynamic=False, opset=17))
    onnx_path.rename(out / "yolo11n-seg-320.onnx")
    write_reference(out)


def write_reference(out: Path) -> None:
    """Ultralytics' predictor on the committed ONNX and the scene image -> the reference JSON."""
    from ultralytics import YOLO

    image = scene_image()
    res = YOLO(str(out / "yolo11n-seg-320.onnx"), task="segment").predict(
        image, imgsz=IMGSZ, conf=CONF, iou=IOU, retina_masks=True, verbose=False
    )[0]
    ref = {"ultralytics": __import__("ultralytics").__version__, "conf": CONF, "iou": IOU, "imgsz": IMGSZ, **as_reference(res)}
    (out / "yolo11n-seg-320.reference.json").write_text(json.dumps(ref))
    print(f"{len(ref['scores'])} reference detections written to {out}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--reference-only"]
    folder = Path(args[0] if args else Path(__file__).parent)
    write_reference(folder) if "--reference-only" in sys.argv else main(folder)
