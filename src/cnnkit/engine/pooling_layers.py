"""Pooling layers: max, average and global average pooling over (N, C, H, W) feature maps."""

from __future__ import annotations

import numpy as np

from cnnkit.engine import pool
from cnnkit.engine.module import Module

IntPair = int | tuple[int, int]


class _Pool2d(Module):
    """Shared geometry: kernel, stride (the kernel by default), padding and `ceil_mode` (count a last
    partial window, torch's output-size rule)."""

    def __init__(
        self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0, *, ceil_mode: bool = False
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode


class MaxPool2d(_Pool2d):
    """Max over each window; the gradient goes to the window's (first) arg-max."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save_for_backward(x)
        return pool.max_pool2d(x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return pool.max_pool2d_backward(
            dy, *self.saved(), self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode
        )


class AvgPool2d(_Pool2d):
    """Mean over each window; zero padding counts in it unless `count_include_pad=False` (torch's divisor)."""

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        padding: IntPair = 0,
        *,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode=ceil_mode)
        self.count_include_pad = count_include_pad

    def _options(self) -> dict:
        return {"ceil_mode": self.ceil_mode, "count_include_pad": self.count_include_pad}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save_for_backward(x)
        return pool.avg_pool2d(x, self.kernel_size, self.stride, self.padding, **self._options())

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return pool.avg_pool2d_backward(dy, *self.saved(), self.kernel_size, self.stride, self.padding, **self._options())


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C): the mean of each channel (Lin et al. 2013, "Network in Network")."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save_for_backward(x)
        return pool.global_avg_pool2d(x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return pool.global_avg_pool2d_backward(dy, *self.saved())
