"""Greedy non-maximum suppression on numpy arrays, by ONNX Runtime's NonMaxSuppression kernel.

A greedy loop in Python costs one step per kept box: about a second on the 8,400 candidates a
640 YOLO head leaves at ``--conf 0.001``. ONNX Runtime (already what runs the models on the CPU)
has the loop in C++, per class, at or under torchvision's ``batched_nms`` cost from 100 to
30,000 candidates (benchmarks/nms_cost.py). It runs here as a one-node graph
(``nms.onnx``, made by ``write_graph``) on one thread, beside the model's threads.

The kept set is greedy NMS's: a box is dropped when its IoU with a kept, higher-scoring box of
its class is strictly greater than the threshold (torchvision's rule). Scores are passed to the
kernel as ranks, so equal scores keep the lower index first, whatever the kernel's sort does.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

GRAPH = Path(__file__).with_name("nms.onnx")


@functools.cache
def _session():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(GRAPH), options, providers=["CPUExecutionProvider"])


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float,
                max_det: int | None = None) -> np.ndarray:
    """Indices (int64) of the boxes kept, highest score first, at most ``max_det``; boxes of
    different classes never suppress each other.

    boxes: (N, 4) xyxy. scores: (N,). classes: (N,) integer class ids.
    """
    n = len(boxes)
    if n == 0 or max_det == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-np.asarray(scores), kind="stable")
    rank = np.empty(n, np.float32)
    rank[order] = np.arange(n, 0, -1, dtype=np.float32)  # n for the best ... 1: distinct, all above the 0 threshold
    present, slot = np.unique(np.asarray(classes), return_inverse=True)
    ranked = np.zeros((1, len(present), n), np.float32)
    ranked[0, slot.reshape(-1), np.arange(n)] = rank
    selected = _session().run(None, {
        "boxes": np.ascontiguousarray(boxes, dtype=np.float32)[None], "scores": ranked,
        "max_output_boxes_per_class": np.array([n if max_det is None else min(n, max_det)], np.int64),  # it stops there
        "iou_threshold": np.array([iou_threshold], np.float32),
        "score_threshold": np.array([0.0], np.float32)})[0]
    kept = selected[:, 2]
    kept = kept[np.argsort(-rank[kept], kind="stable")]
    return kept[:max_det].astype(np.int64, copy=False)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_det: int | None = None) -> np.ndarray:
    """Class-agnostic :func:`batched_nms`: every box may suppress every other."""
    return batched_nms(boxes, scores, np.zeros(len(boxes), np.int64), iou_threshold, max_det)


def write_graph(path: Path = GRAPH) -> Path:
    """Write the one-node NonMaxSuppression graph the functions above run (needs ``onnx``)."""
    import onnx
    from onnx import TensorProto, helper

    names = ["boxes", "scores", "max_output_boxes_per_class", "iou_threshold", "score_threshold"]
    inputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, "n", 4]),
              helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, "classes", "n"]),
              helper.make_tensor_value_info(names[2], TensorProto.INT64, [1]),
              helper.make_tensor_value_info(names[3], TensorProto.FLOAT, [1]),
              helper.make_tensor_value_info(names[4], TensorProto.FLOAT, [1])]
    node = helper.make_node("NonMaxSuppression", names, ["selected"], center_point_box=0)
    graph = helper.make_graph([node], "nms", inputs, [helper.make_tensor_value_info("selected", TensorProto.INT64, ["k", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="rtpipe")
    model.ir_version = 7
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path
