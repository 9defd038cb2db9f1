"""rtpipe's small semantic segmentation network (the demo's road model): a class for every pixel.

Encoder: four stride-2 3x3 convolutions (to 1/16), a dilated context block; decoder: the
context upsampled to 1/4 and joined with the 1/4 features, a 3x3 convolution, class logits at
1/4, upsampled (bilinear) to the input. Any input size. Returns ``{"out": logits}`` as
torchvision's segmentation models do, so the semantic family exports and decodes it alike.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class RoadNet(nn.Module):
    def __init__(self, n_classes: int, width: int = 16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(_block(3, w, 2), _block(w, 2 * w, 2))  # 1/4
        self.down = nn.Sequential(_block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 2))  # 1/16
        self.context = nn.Sequential(_block(4 * w, 4 * w, dilation=2), _block(4 * w, 4 * w, dilation=4))
        self.fuse = _block(6 * w, 2 * w)
        self.head = nn.Conv2d(2 * w, n_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        quarter = self.stem(x)
        deep = self.context(self.down(quarter))
        deep = F.interpolate(deep, size=quarter.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.head(self.fuse(torch.cat([quarter, deep], 1)))
        return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}
