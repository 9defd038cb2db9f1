"""The GPU-resident path: frames go to the device once and stay there until they are drawn.

The same steps as the CPU path (``pipeline.preprocess``, ``pipeline.ops``, ``pipeline.overlay``)
written on torch tensors. Nothing here needs CUDA: on CPU tensors the code runs as it does on
the GPU, which is how CI tests it against the numpy path.

  preprocess.py  letterbox / torchvision fitting of uint8 frames on the device
  decode.py      YOLO decoding: thresholds, ``torchvision.ops.batched_nms``, masks from prototypes
  overlay.py     mask blending and box outlines on the device (labels are drawn on the CPU)
  transfer.py    uploads from pinned, double-buffered host memory on a side stream
  graphs.py      CUDA graphs for fixed-shape engines, with an eager fallback
  steps.py       the pipeline's steps on this path (``GpuSteps``)
"""
