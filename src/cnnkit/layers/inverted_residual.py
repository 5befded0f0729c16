"""Inverted residual blocks: expand with a 1x1 conv, filter depthwise, project linearly back.

Sandler et al. 2018 (MobileNetV2, Fig. 3): the residual joins the thin ends and the last conv has
no activation ("linear bottleneck"), because ReLU on a low-dimensional manifold destroys information.
MobileNetV3 (Howard et al. 2019) and EfficientNet (Tan & Le 2019, "MBConv") add squeeze-excitation
on the expanded features; EfficientNet also drops the residual branch with stochastic depth.
Two classes because torchvision names them differently: `InvertedResidual` (MobileNetV2, children
under `conv`) and `MBConv` (MobileNetV3 / EfficientNet, children under `block`).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import ActFactory, ConvNormAct, NormFactory
from cnnkit.layers.squeeze_excitation import SqueezeExcitation
from cnnkit.layers.stochastic_depth import StochasticDepth


def _check_stride(stride: int) -> None:
    if stride not in (1, 2):
        raise ValueError(f"inverted residual stride must be 1 or 2, got {stride}")


class InvertedResidual(nn.Module):
    """MobileNetV2 block, (N, C_in, H, W) -> (N, C_out, H / stride, W / stride).

    `conv` = [1x1 expand ConvNormAct (omitted when expand_ratio == 1)], 3x3 depthwise ConvNormAct,
    1x1 Conv2d, BatchNorm (torchvision's naming). Residual only when stride 1 and C_in == C_out.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: float,
        norm_layer: NormFactory = nn.BatchNorm2d,
        activation: ActFactory = nn.ReLU6,
    ) -> None:
        super().__init__()
        _check_stride(stride)
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_channels, hidden, 1, norm_layer=norm_layer, activation_layer=activation))
        layers += [
            ConvNormAct(hidden, hidden, 3, stride, groups=hidden, norm_layer=norm_layer, activation_layer=activation),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            norm_layer(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MBConv(nn.Module):
    """MobileNetV3 / EfficientNet block, (N, C_in, H, W) -> (N, C_out, H / stride, W / stride).

    `block` = [1x1 expand ConvNormAct (omitted when expanded == C_in)], k x k depthwise ConvNormAct,
    [SqueezeExcitation(expanded, se_channels) when se_channels > 0], 1x1 projection ConvNormAct
    without activation. Residual (through stochastic depth) only when stride 1 and C_in == C_out.
    """

    def __init__(
        self,
        in_channels: int,
        expanded_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        activation: ActFactory,
        norm_layer: NormFactory,
        *,
        se_channels: int = 0,
        se_activation: ActFactory = nn.ReLU,
        se_gate: ActFactory = nn.Sigmoid,
        stochastic_depth_prob: float = 0.0,
    ) -> None:
        super().__init__()
        _check_stride(stride)
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expanded_channels != in_channels:
            layers.append(
                ConvNormAct(in_channels, expanded_channels, 1, norm_layer=norm_layer, activation_layer=activation)
            )
        layers.append(
            ConvNormAct(
                expanded_channels,
                expanded_channels,
                kernel_size,
                stride,
                groups=expanded_channels,
                norm_layer=norm_layer,
                activation_layer=activation,
            )
        )
        if se_channels > 0:
            layers.append(SqueezeExcitation(expanded_channels, se_channels, se_activation, se_gate))
        layers.append(ConvNormAct(expanded_channels, out_channels, 1, norm_layer=norm_layer, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out


class FusedMBConv(nn.Module):
    """EfficientNetV2's Fused-MBConv (Tan & Le 2021, fig. 2): the 1x1 expand and the depthwise conv
    of MBConv fused into one k x k conv, then a 1x1 projection (no projection when not expanding).

    (N, C_in, H, W) -> (N, C_out, H / stride, W / stride); residual through stochastic depth when
    stride 1 and C_in == C_out; torchvision's names (`block.0`, `block.1`).
    """

    def __init__(
        self,
        in_channels: int,
        expanded_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        activation: ActFactory,
        norm_layer: NormFactory,
        *,
        stochastic_depth_prob: float = 0.0,
    ) -> None:
        super().__init__()
        _check_stride(stride)
        self.use_res_connect = stride == 1 and in_channels == out_channels
        if expanded_channels != in_channels:
            layers: list[nn.Module] = [
                ConvNormAct(
                    in_channels, expanded_channels, kernel_size, stride, norm_layer=norm_layer, activation_layer=activation
                ),
                ConvNormAct(expanded_channels, out_channels, 1, norm_layer=norm_layer, activation_layer=None),
            ]
        else:
            layers = [
                ConvNormAct(
                    in_channels, out_channels, kernel_size, stride, norm_layer=norm_layer, activation_layer=activation
                )
            ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out
