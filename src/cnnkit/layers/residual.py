"""The residual basic block of ResNet-18/34 and the projection shortcut every residual block uses.

He et al. 2016, "Deep Residual Learning for Image Recognition": y = relu(F(x) + shortcut(x)).
Child names follow torchvision (`conv1`, `bn1`, `conv2`, `bn2`, `downsample.0/.1`), so its weights
load unchanged; `se` is timm's name for an optional channel attention after the last norm.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import NormFactory

AttentionFactory = Callable[[int], nn.Module]


def projection_shortcut(
    in_channels: int, out_channels: int, stride: int, norm_layer: NormFactory, *, avg_down: bool = False
) -> nn.Sequential:
    """1x1 conv + norm matching the residual branch's shape: (N, C_in, H, W) -> (N, C_out, H/s, W/s).

    `avg_down=True` is the ResNet-D shortcut (He et al. 2019, "Bag of Tricks", fig. 2c): a 2x2
    average pool does the striding so the 1x1 conv no longer skips 3/4 of the input; children are
    then `0` (pool, identity at stride 1), `1` (conv), `2` (norm) as in timm.
    """
    if not avg_down:
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), norm_layer(out_channels)
        )
    pool: nn.Module = (
        nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride != 1 else nn.Identity()
    )
    return nn.Sequential(pool, nn.Conv2d(in_channels, out_channels, 1, bias=False), norm_layer(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or projection) shortcut: (N, C_in, H, W) -> (N, planes, H/s, W/s)."""

    expansion = 1

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
        if groups != 1 or width_per_group != 64:
            raise ValueError("BasicBlock supports only groups=1 and width_per_group=64 (use Bottleneck)")
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.se = attention(planes) if attention is not None else nn.Identity()
        self.downsample = downsample

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so the block starts as the identity (Goyal et al. 2017)."""
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + shortcut)
