"""The pre-activation residual block: norm and ReLU come BEFORE each conv.

He et al. 2016, "Identity Mappings in Deep Residual Networks", fig. 1b / eq. 3: the shortcut
path stays a pure identity (no ReLU after the addition), which eases training of very deep nets.
When the shape changes, the 1x1 projection reads the pre-activated input (as in the paper's code).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import NormFactory


class PreActBasicBlock(nn.Module):
    """(N, C_in, H, W) -> (N, planes, H/s, W/s): x' = relu(bn1(x)); conv2(relu(bn2(conv1(x')))) + sc."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, norm_layer: NormFactory = nn.BatchNorm2d) -> None:
        super().__init__()
        self.bn1 = norm_layer(inplanes)
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        needs_projection = stride != 1 or inplanes != planes
        self.downsample = nn.Conv2d(inplanes, planes, 1, stride, bias=False) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + shortcut
