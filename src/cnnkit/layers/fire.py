"""SqueezeNet's Fire module (Iandola et al. 2016): a 1x1 squeeze, then parallel 1x1 and 3x3 expands."""

from __future__ import annotations

import torch
from torch import nn


class Fire(nn.Module):
    """(N, in_channels, H, W) -> (N, expand1x1 + expand3x3, H, W); torchvision's module names."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        self.out_channels = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        ones = self.expand1x1_activation(self.expand1x1(x))
        threes = self.expand3x3_activation(self.expand3x3(x))
        return torch.cat([ones, threes], 1)
