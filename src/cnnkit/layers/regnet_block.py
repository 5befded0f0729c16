"""RegNet's residual bottleneck block (Radosavovic et al. 2020, "Designing Network Design Spaces"):
1x1 -> grouped 3x3 [-> SE] -> 1x1, plus an identity or projected shortcut; torchvision's names."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import ConvNormAct
from cnnkit.layers.squeeze_excitation import SqueezeExcitation


class ResBottleneckBlock(nn.Module):
    """(N, width_in, H, W) -> (N, width_out, H/stride, W/stride): relu(shortcut(x) + f(x)).

    `f` is `a` (1x1), `b` (3x3 with groups of `group_width` channels, the stride), `se` (squeezing
    to `se_ratio` of width_in, when given) and `c` (1x1, no activation); bottleneck multiplier 1.
    """

    def __init__(self, width_in: int, width_out: int, stride: int, group_width: int, se_ratio: float | None) -> None:
        super().__init__()
        self.proj = None
        if width_in != width_out or stride != 1:
            self.proj = ConvNormAct(width_in, width_out, 1, stride=stride, activation_layer=None)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["a"] = ConvNormAct(width_in, width_out, 1)
        layers["b"] = ConvNormAct(width_out, width_out, 3, stride=stride, groups=width_out // group_width)
        if se_ratio:
            layers["se"] = SqueezeExcitation(width_out, int(round(se_ratio * width_in)))
        layers["c"] = ConvNormAct(width_out, width_out, 1, activation_layer=None)
        self.f = nn.Sequential(layers)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.proj is None else self.proj(x)
        return self.activation(shortcut + self.f(x))
