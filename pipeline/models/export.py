"""A family's graph module -> ONNX bytes carrying the engine metadata (needs torch and onnx)."""

from __future__ import annotations

import io
import json
import warnings

import numpy as np

from pipeline.types import EngineMeta

META_KEY = "rtpipe"  # ONNX metadata_props key holding the engine metadata as JSON


def to_onnx(module, meta: EngineMeta, opset: int = 17, batch: int | None = None) -> bytes:
    """Export ``module`` at ``meta.fit.input_hw``; ``batch`` None gives a dynamic batch axis.

    Uses torch.onnx's TorchScript exporter (``dynamo=False``): the dynamo exporter cannot trace
    the data-dependent shapes of the two-stage torchvision models, and one exporter for every
    family keeps the graphs alike.
    """
    import onnx
    import torch

    h, w = meta.fit.input_hw
    example = torch.rand(batch or 1, 3, h, w)
    names = list(meta.outputs)
    dynamic = None if batch else {"images": {0: "batch"}, **{n: {0: "batch"} for n in names}}
    if meta.fit.mode == "rect":  # any height and width (multiples of the stride): YOLO's dense outputs follow them
        dynamic = dynamic or {"images": {}, **{n: {} for n in names}}
        dynamic["images"].update({2: "height", 3: "width"})
        dynamic[names[0]].update({2: "anchors"})
        if len(names) > 1:
            dynamic[names[1]].update({2: "mask_height", 3: "mask_width"})
    elif meta.fit.mode == "shortside" and meta.fit.stride:  # semantic: the class map follows the input
        dynamic = dynamic or {"images": {}, **{n: {} for n in names}}
        dynamic["images"].update({2: "height", 3: "width"})
        dynamic["class_map"].update({1: "height", 2: "width"})
    elif meta.fit.mode == "torchvision" and meta.fit.stride:  # any height and width
        dynamic = dynamic or {"images": {}, **{n: {} for n in names}}
        dynamic["images"].update({2: "height", 3: "width"})
        if meta.kind != "rcnn":  # one-stage heads: (B, anchors, ...) per input size; two-stage: padded to max_det
            for n in names:
                dynamic[n].update({1: "anchors"})
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the graph is checked by its users' tests
        torch.onnx.export(module, (example,), buf, input_names=["images"], output_names=names,
                          opset_version=opset, dynamo=False, dynamic_axes=dynamic)
    proto = onnx.load_from_string(buf.getvalue())
    set_metadata(proto, {META_KEY: json.dumps(meta.to_dict(), default=_jsonable)})
    return proto.SerializeToString()


def set_metadata(proto, values: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for k, v in values.items():
        entry = existing.get(k) or proto.metadata_props.add()
        entry.key, entry.value = k, v


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"{type(x).__name__} is not JSON-serialisable")
