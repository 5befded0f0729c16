"""DenseNet-BC's dense layer, dense block and transition.

Huang et al. 2017, "Densely Connected Convolutional Networks", sec. 3: each layer sees the
concatenation of all earlier feature maps and adds `growth_rate` new channels; the "B"
bottleneck is BN-ReLU-conv1x1(bn_size * growth) before BN-ReLU-conv3x3(growth), and the "C"
transition halves channels (BN-ReLU-conv1x1) and resolution (2x2 average pool).
Names follow torchvision (`denselayerN`, `norm1`, `relu1`, `conv1`, ...; transition `norm`,
`relu`, `conv`, `pool`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.layers.conv_norm_act import NormFactory


class DenseLayer(nn.Module):
    """(N, C_in, H, W) -> (N, growth_rate, H, W): the new features, to be concatenated by the block."""

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        norm_layer: NormFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = norm_layer(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        out = self.conv2(self.relu2(self.norm2(out)))
        return F.dropout(out, p=self.drop_rate, training=self.training) if self.drop_rate > 0 else out


class DenseBlock(nn.ModuleDict):
    """(N, C_in, H, W) -> (N, C_in + num_layers * growth_rate, H, W)."""

    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        growth_rate: int,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        norm_layer: NormFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, drop_rate, norm_layer)
            self.add_module(f"denselayer{i + 1}", layer)
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Concatenating once per layer keeps the code plain; memory-efficient checkpointing is not offered.
        features = x
        for layer in self.values():
            features = torch.cat([features, layer(features)], 1)
        return features


class Transition(nn.Sequential):
    """(N, C_in, H, W) -> (N, C_out, H/2, W/2): BN-ReLU-conv1x1-avgpool2."""

    def __init__(self, in_channels: int, out_channels: int, norm_layer: NormFactory = nn.BatchNorm2d) -> None:
        super().__init__()
        self.norm = norm_layer(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)
