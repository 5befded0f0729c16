"""Pooling layers: max, average and global average pooling over (N, C, H, W) feature maps."""

from __future__ import annotations

import numpy as np

from cnnkit.engine import pool
from cnnkit.engine.module import Module

IntPair = int | tuple[int, int]


class _Pool2d(Module):
    """Shared geometry (kernel, stride = kernel by default, padding) and input cache."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding


class MaxPool2d(_Pool2d):
    """Max over each window; the gradient goes to the window's (first) arg-max."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save_for_backward(x)
        return pool.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return pool.max_pool2d_backward(dy, *self.saved(), self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Mean over each window (zero padding counted, like torch's default)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save_for_backward(x)
        return pool.avg_pool2d(x, self.kernel_size, self.stride, self.padding)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return pool.avg_pool2d_backward(dy, *self.saved(), self.kernel_size, self.stride, self.padding)


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C): the mean of each channel (Lin et al. 2013, "Network in Network")."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save_for_backward(x)
        return pool.global_avg_pool2d(x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return pool.global_avg_pool2d_backward(dy, *self.saved())
