"""Conv -> activation [-> pool] stacks of the pre-BatchNorm classics (LeNet-5, AlexNet), as data rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


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
) -> nn.Sequential:
    """A flat Sequential conv, act[, pool], ... whose indices match torchvision's `features.N`."""
    layers: list[nn.Module] = []
    channels = in_chans
    for row in rows:
        layers += [nn.Conv2d(channels, row.out_channels, row.kernel_size, row.stride, row.padding), activation()]
        if row.pool_after:
            layers.append(pool())
        channels = row.out_channels
    return nn.Sequential(*layers)
