"""The bundled stand-in model: a tiny random-init network with the yolo-seg output layout.

It exists so that the pipeline, its tests and the README's main job run with no download
before the real model families land. Its detections are meaningless; its shapes, metadata and
timing behaviour are those of a real YOLO-seg export.

Regenerate the shipped file (needs the ``onnx`` package, in the ``dev`` extra)::

    python -m pipeline.models.tiny pipeline/models/assets/tiny-yoloseg.onnx
"""

from __future__ import annotations

import sys

import numpy as np

NAMES = ("car", "pedestrian", "cyclist", "sign")
IMGSZ = 320
STRIDE = 8
NM = 32
SEED = 0


def build(path: str, seed: int = SEED, imgsz: int = IMGSZ, width: int = 32) -> None:
    """Write the tiny yolo-seg ONNX model to ``path`` (deterministic for a seed)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    nc = len(NAMES)

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def conv(x, cin, cout, k, s, name, relu=True, bias=None):
        w = rng.normal(0, (2 / (cin * k * k)) ** 0.5, (cout, cin, k, k)).astype(np.float32)
        b = np.zeros(cout, np.float32) if bias is None else bias.astype(np.float32)
        nodes.append(helper.make_node("Conv", [x, const(f"{name}.w", w), const(f"{name}.b", b)], [f"{name}.y"],
                                      kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4))
        if not relu:
            return f"{name}.y"
        nodes.append(helper.make_node("Relu", [f"{name}.y"], [f"{name}.r"]))
        return f"{name}.r"

    x = conv("images", 3, width // 4, 3, 2, "c1")          # /2
    p4 = conv(x, width // 4, width // 2, 3, 2, "c2")        # /4
    x = conv(p4, width // 2, width, 3, 2, "c3")             # /8
    x = conv(x, width, width, 3, 1, "c4")
    proto = conv(p4, width // 2, NM, 3, 1, "proto")
    nodes.append(helper.make_node("Identity", [proto], ["output1"]))
    # a positive coefficient bias makes the (random) masks cover part of their boxes
    head = conv(x, width, 4 + nc + NM, 1, 1, "head", relu=False, bias=np.r_[np.zeros(4 + nc), np.full(NM, 2.0)])
    g = imgsz // STRIDE
    nodes.append(helper.make_node("Reshape", [head, const("flat", np.array([0, 4 + nc + NM, g * g], np.int64))], ["raw"]))
    nodes.append(helper.make_node("Split", ["raw", const("sizes", np.array([2, 2, nc, NM], np.int64))],
                                  ["xy", "wh", "cls", "coef"], axis=1))
    gy, gx = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    grid = np.stack([gx.ravel(), gy.ravel()])[None].astype(np.float32) + 0.5
    for name in ("xy", "wh", "cls"):
        nodes.append(helper.make_node("Sigmoid", [name], [f"{name}.s"]))
    # centre = (grid + 2*sigmoid - 1) * stride; size = 4 * stride * sigmoid + stride
    nodes.append(helper.make_node("Mul", ["xy.s", const("two", np.float32(2))], ["xy.2"]))
    nodes.append(helper.make_node("Add", ["xy.2", const("grid", grid - 1)], ["xy.g"]))
    nodes.append(helper.make_node("Mul", ["xy.g", const("stride", np.float32(STRIDE))], ["cxcy"]))
    nodes.append(helper.make_node("Mul", ["wh.s", const("wscale", np.float32(4 * STRIDE))], ["wh.m"]))
    nodes.append(helper.make_node("Add", ["wh.m", "stride"], ["wh.o"]))
    nodes.append(helper.make_node("Concat", ["cxcy", "wh.o", "cls.s", "coef"], ["output0"], axis=1))

    graph = helper.make_graph(
        nodes, "rtpipe-tiny-yoloseg",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + nc + NM, g * g]),
         helper.make_tensor_value_info("output1", TensorProto.FLOAT, ["batch", NM, imgsz // 4, imgsz // 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="rtpipe")
    model.ir_version = 8
    meta = {
        "names": repr(dict(enumerate(NAMES))), "imgsz": repr([imgsz, imgsz]), "stride": str(STRIDE),
        "task": "segment", "description": f"rtpipe tiny random-init yolo-seg stand-in (seed {seed})",
    }
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    _calibrate_class_bias(model, nc)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def _calibrate_class_bias(model, nc: int, per_frame: float = 1.5, conf: float = 0.25) -> None:
    """Set the class biases so that on synthetic scenes each class has about ``per_frame``
    anchors above ``conf`` per frame: a few detections that move with the scene, instead of
    none or hundreds.

    The scenes are drawn at the input's width (16:9, so the fit only pads them): no resize and
    no OpenCV drawing, so the same biases come out on every OpenCV version."""
    import onnxruntime as ort
    from onnx import numpy_helper

    from pipeline.preprocess.host import prepare
    from pipeline.sources import SyntheticScene

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    imgsz = sess.get_inputs()[0].shape[2]
    frames = [SyntheticScene(imgsz, imgsz * 9 // 16, seed).render(i * 10) for seed in range(4) for i in range(2)]
    batch = np.stack([prepare(f, (imgsz, imgsz))[0] for f in frames])
    scores = sess.run(["output0"], {"images": batch})[0][:, 4 : 4 + nc].astype(np.float64)  # (B, nc, N)
    logits = np.log(scores / (1 - scores)).transpose(1, 0, 2).reshape(nc, -1)
    budget = int(per_frame * len(frames))
    shift = np.zeros(nc)
    for c in range(nc):
        values = np.unique(logits[c])[::-1]  # distinct, descending; equal values pass together
        counts = np.searchsorted(-np.sort(logits[c])[::-1], -values, side="right")
        k = max(int(np.searchsorted(counts, budget, side="right")) - 1, 0)
        cut = (values[k] + values[k + 1]) / 2 if k + 1 < len(values) else values[k] - 1
        shift[c] = np.log(conf / (1 - conf)) - cut
    head_b = next(t for t in model.graph.initializer if t.name == "head.b")
    b = numpy_helper.to_array(head_b).copy()
    b[4 : 4 + nc] += shift.astype(np.float32)
    head_b.CopyFrom(numpy_helper.from_array(b, "head.b"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipeline.models.tiny OUT.onnx")
    build(sys.argv[1])
    print(f"wrote {sys.argv[1]}")
