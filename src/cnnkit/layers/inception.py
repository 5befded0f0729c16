"""The Inception module of GoogLeNet and the conv-BN-ReLU unit both Inception networks are built from.

Szegedy et al. 2015, "Going Deeper with Convolutions", fig. 2b: four parallel branches (1x1;
1x1 reduce -> 3x3; 1x1 reduce -> 5x5; 3x3 max-pool -> 1x1 projection) concatenated on channels.
The 1x1 reductions before the big kernels keep the cost down. Names follow torchvision
(`branch1`..`branch4`, each conv unit with children `conv`, `bn`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

KernelSize = int | tuple[int, int]


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU, with torchvision's child names `conv`, `bn`.

    eps=1e-3 is the value of the original TensorFlow Inception weights.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: KernelSize,
        stride: int = 1,
        padding: KernelSize = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


@dataclass(frozen=True)
class InceptionWidths:
    """Output channels of one Inception module's branches (a row of the paper's table 1)."""

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj


class Inception(nn.Module):
    """(N, C_in, H, W) -> (N, widths.out_channels, H, W): the four branches concatenated.

    `large_kernel` is the kernel of the "5x5" branch. torchvision's GoogLeNet port uses 3 there
    (a known deviation from the paper kept so that its published weights load), so its model
    passes `large_kernel=3`; the paper's value is 5.
    """

    def __init__(self, in_channels: int, widths: InceptionWidths, large_kernel: int = 5) -> None:
        super().__init__()
        w = widths
        self.branch1 = BasicConv2d(in_channels, w.ch1x1, 1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, w.ch3x3red, 1), BasicConv2d(w.ch3x3red, w.ch3x3, 3, padding=1)
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, w.ch5x5red, 1),
            BasicConv2d(w.ch5x5red, w.ch5x5, large_kernel, padding=large_kernel // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(in_channels, w.pool_proj, 1)
        )
        self.out_channels = w.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)
