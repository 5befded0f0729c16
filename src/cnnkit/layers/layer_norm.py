"""LayerNorm over the channels of an (N, C, H, W) tensor, as ConvNeXt uses between stages.

A subclass of `nn.LayerNorm(C)` (parameters `weight`, `bias` of shape (C,), like torchvision's
`LayerNorm2d`), applied at every pixel independently.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LayerNorm2d(nn.LayerNorm):
    """(N, C, H, W) -> (N, C, H, W), normalising each pixel's C-vector (channels-last LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
