"""Conv -> activation [-> pool] stacks of the pre-BatchNorm classics (LeNet-5, AlexNet), as data rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from cnnkit.models.feature_info import FeatureInfo, sequential_feature_info


@dataclass(frozen=True)
class PlainConv:
    """One conv layer (with bias) of a plain stack; `pool_after` closes it with the stack's pooling."""

    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    pool_after: bool = False


def plain_conv_stack(
    rows: tuple[PlainConv, ...],
    in_chans: int,
    activation: Callable[[], nn.Module],
    pool: Callable[[], nn.Module],
) -> tuple[nn.Sequential, FeatureInfo]:
    """A flat Sequential conv, act[, pool], ... whose indices match torchvision's `features.N`, and
    its stages as the model's `features` (each the last layer before a stride-2 pool or conv)."""
    layers: list[nn.Module] = []
    shapes: list[tuple[int, int]] = []
    channels = in_chans
    for row in rows:
        layers += [nn.Conv2d(channels, row.out_channels, row.kernel_size, row.stride, row.padding), activation()]
        shapes += [(row.out_channels, row.stride), (row.out_channels, 1)]
        if row.pool_after:
            layers.append(pool())
            shapes.append((row.out_channels, layers[-1].stride))
        channels = row.out_channels
    return nn.Sequential(*layers), sequential_feature_info("features", shapes)
