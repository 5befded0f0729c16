"""Squeeze-and-excitation: re-weight channels by a gate computed from their global average.

Hu et al. 2018, "Squeeze-and-Excitation Networks", eq. 2-4. Children are named like torchvision's
`SqueezeExcitation` (`fc1`, `fc2` are 1x1 convs with bias), which is also how timm's `SEModule`
names its parameters, so both families' weights load unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    """(N, C, H, W) -> (N, C, H, W): `x * gate(fc2(act(fc1(mean_hw(x)))))`.

    `activation` is the squeeze nonlinearity (delta in the paper), `scale_activation` the gate
    (sigma): Sigmoid gives per-channel weights in (0, 1); MobileNetV3 uses Hardsigmoid.
    """

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
        scale_activation: Callable[..., nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel weights, shape (N, C, 1, 1)."""
        scale = self.activation(self.fc1(self.avgpool(x)))
        return self.scale_activation(self.fc2(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_gate(x) * x
