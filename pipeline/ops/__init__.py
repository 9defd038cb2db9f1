"""Pure array functions: box maths, anchors, NMS, masks. No I/O; shapes in docstrings."""

from pipeline.ops.anchors import default_boxes, grid_anchors
from pipeline.ops.boxes import box_iou, cxcywh_to_xyxy, decode_deltas, decode_ltrb
from pipeline.ops.masks import class_rles, masks_from_prototypes, paste_masks, rle_encode, rle_encode_crop
from pipeline.ops.nms import batched_nms, nms

__all__ = [
    "box_iou", "cxcywh_to_xyxy", "decode_deltas", "decode_ltrb", "default_boxes", "grid_anchors",
    "nms", "batched_nms", "class_rles", "masks_from_prototypes", "paste_masks", "rle_encode", "rle_encode_crop",
]
