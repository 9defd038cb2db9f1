"""The demo: generated driving scenes, the small model trained on them, and ``rtpipe demo``.

- ``scenes``: the clip generator (deterministic by seed) with exact instance ground truth;
- ``clip``: a clip as H.264 MP4 plus COCO JSON ground truth;
- ``data``, ``loss``, ``train``: training samples, the loss, ``python -m pipeline.demo.train``.

The trained weights ship as ``pipeline/models/assets/demo-seg.pt`` (builtin model ``demo``),
with its ONNX export beside it, so the demo runs on the core install (no torch).
"""
