"""The 1x1 bottleneck residual block (reduce -> 3x3 -> expand) of ResNet-50+, ResNeXt and Wide ResNet.

He et al. 2016: a 1x1 conv reduces the channels, a 3x3 conv works at the reduced width, and a
1x1 conv expands by 4. ResNeXt (Xie et al. 2017) makes the 3x3 grouped (`groups` = cardinality);
Wide ResNet (Zagoruyko & Komodakis 2016) widens it (`width_per_group` = 128). The stride sits on
the 3x3 conv ("ResNet v1.5", as torchvision and timm). Names follow torchvision (`conv1..3`,
`bn1..3`, `downsample`), plus timm's `se` for squeeze-excitation (SE-ResNet).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import NormFactory
from cnnkit.layers.residual import AttentionFactory


def bottleneck_width(planes: int, groups: int = 1, width_per_group: int = 64) -> int:
    """Channels of the 3x3 conv: planes * width_per_group / 64 per group, times the groups."""
    return int(planes * (width_per_group / 64.0)) * groups


class Bottleneck(nn.Module):
    """(N, C_in, H, W) -> (N, 4 * planes, H/s, W/s): relu(expand(3x3(reduce(x))) + shortcut(x))."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        width_per_group: int = 64,
        norm_layer: NormFactory = nn.BatchNorm2d,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        width = bottleneck_width(planes, groups, width_per_group)
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = norm_layer(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = norm_layer(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = norm_layer(out_channels)
        self.se = attention(out_channels) if attention is not None else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so the block starts as the identity (Goyal et al. 2017)."""
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + shortcut)
