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


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm then ReLU in one module, so its parameters sit at `<name>.weight` (timm's names)."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class DownsampleConv(nn.Module):
    """The projection shortcut of a pre-activation block: a 1x1 conv on the pre-activated input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PreActBottleneck(nn.Module):
    """(N, C_in, H, W) -> (N, out_channels, H/s, W/s), timm's ResNetV2 names (He et al. 2016, fig. 4e):
    x' = relu(norm1(x)); conv3(norm3(conv2(norm2(conv1(x'))))) + shortcut, the stride on conv2."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        mid = out_channels // 4
        self.downsample: DownsampleConv | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = DownsampleConv(in_channels, out_channels, stride)
        self.norm1 = BatchNormAct2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.norm2 = BatchNormAct2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.norm3 = BatchNormAct2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.norm1(x)
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv3(self.norm3(self.conv2(self.norm2(self.conv1(pre)))))
        return out + shortcut
