"""Depthwise-separable convolution, the block of MobileNet v1 (Howard et al. 2017, Fig. 3).

A k x k depthwise conv (one filter per channel, spatial mixing) then a 1x1 pointwise conv
(channel mixing), each followed by BatchNorm and the activation: about k^2 times fewer
multiply-adds than a full k x k conv. Children follow timm's `DepthwiseSeparableConv`
(`conv_dw`, `bn1`, `conv_pw`, `bn2`) so timm's `mobilenetv1_*` weights load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import ActFactory, NormFactory, same_padding


class DepthwiseSeparableConv(nn.Module):
    """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride); no residual (MobileNet v1 has none)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        activation: ActFactory = nn.ReLU6,
        norm_layer: NormFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        padding = same_padding(kernel_size)
        self.conv_dw = nn.Conv2d(
            in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, bias=False
        )
        self.bn1 = norm_layer(in_channels)
        self.act1 = activation(inplace=True)
        self.conv_pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = norm_layer(out_channels)
        self.act2 = activation(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_dw(x)))
        return self.act2(self.bn2(self.conv_pw(x)))
