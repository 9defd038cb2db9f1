"""Pure array functions: box maths, NMS, masks. No I/O; shapes in docstrings."""

from pipeline.ops.boxes import box_iou, cxcywh_to_xyxy
from pipeline.ops.masks import masks_from_prototypes, rle_encode, rle_encode_crop
from pipeline.ops.nms import batched_nms, nms

__all__ = ["box_iou", "cxcywh_to_xyxy", "nms", "batched_nms", "masks_from_prototypes", "rle_encode", "rle_encode_crop"]
