"""The ConvNeXt block (Liu et al. 2022, Fig. 4): a ResNet block modernised towards a Transformer.

7x7 depthwise conv (large receptive field, like attention's spatial mixing), LayerNorm, then an
inverted MLP C -> 4C -> C with GELU applied per pixel (channels-last Linear layers), a learnable
per-channel layer scale (Touvron et al. 2021, init 1e-6 so each block starts near identity) and
stochastic depth on the residual branch. Children follow torchvision's `CNBlock`: `block.0..6`,
`layer_scale` of shape (C, 1, 1).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnkit.layers.stochastic_depth import StochasticDepth


class Permute(nn.Module):
    """Reorder tensor dimensions, e.g. (0, 2, 3, 1): NCHW -> NHWC so Linear/LayerNorm act on channels."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class ConvNeXtBlock(nn.Module):
    """(N, C, H, W) -> (N, C, H, W): `x + drop_path(layer_scale * mlp(norm(dwconv7x7(x))))`."""

    def __init__(
        self,
        channels: int,
        layer_scale: float = 1e-6,
        stochastic_depth_prob: float = 0.0,
        *,
        norm_eps: float = 1e-6,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        hidden = mlp_ratio * channels
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=7, padding=3, groups=channels, bias=True),
            Permute((0, 2, 3, 1)),
            nn.LayerNorm(channels, eps=norm_eps),
            nn.Linear(channels, hidden),
            nn.GELU(),
            nn.Linear(hidden, channels),
            Permute((0, 3, 1, 2)),
        )
        self.layer_scale = nn.Parameter(torch.full((channels, 1, 1), float(layer_scale)))
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.stochastic_depth(self.layer_scale * self.block(x))
