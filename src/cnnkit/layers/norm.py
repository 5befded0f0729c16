"""Norm-layer factories: BatchNorm by default, GroupNorm where batches are small.

Every block that normalises takes a `norm_layer: NormFactory` (channels -> module), so a model
switches to GroupNorm (Wu & He 2018, "Group Normalization") without touching its blocks.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from cnnkit.layers.conv_norm_act import NormFactory

NormKind = Literal["batch", "group"]


class GroupNormFactory:
    """`channels -> nn.GroupNorm(num_groups, channels)`; refuses channel counts it cannot split."""

    def __init__(self, num_groups: int = 32, eps: float = 1e-5) -> None:
        if num_groups < 1:
            raise ValueError(f"num_groups must be >= 1, got {num_groups}")
        self.num_groups = num_groups
        self.eps = eps

    def __call__(self, channels: int) -> nn.GroupNorm:
        if channels % self.num_groups:
            raise ValueError(f"GroupNorm: {channels} channels are not divisible by num_groups={self.num_groups}")
        return nn.GroupNorm(self.num_groups, channels, eps=self.eps)

    def __repr__(self) -> str:
        return f"GroupNormFactory(num_groups={self.num_groups}, eps={self.eps})"


def make_norm_layer(kind: NormKind = "batch", *, num_groups: int = 32, eps: float = 1e-5) -> NormFactory:
    """The factory for norm `kind`: "batch" -> BatchNorm2d, "group" -> GroupNorm(num_groups)."""
    if kind == "batch":
        return lambda channels: nn.BatchNorm2d(channels, eps=eps)
    if kind == "group":
        return GroupNormFactory(num_groups, eps)
    raise ValueError(f"norm kind must be 'batch' or 'group', got {kind!r}")
