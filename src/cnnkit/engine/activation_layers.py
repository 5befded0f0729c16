"""Activation layers: each wraps a functional op pair `op(x, ...)` / `op_backward(dy, x, ...)`.

Shape-preserving, no parameters; the layer caches its input for backward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnkit.engine import activations
from cnnkit.engine.module import Module


class Activation(Module):
    """An element-wise nonlinearity y = f(x); subclasses name the functional pair and its options."""

    forward_op: Callable[..., np.ndarray]
    backward_op: Callable[..., np.ndarray]

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = options

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save_for_backward(x)
        return type(self).forward_op(x, **self.options)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return type(self).backward_op(dy, *self.saved(), **self.options)


class ReLU(Activation):
    """max(x, 0)."""

    forward_op = activations.relu
    backward_op = activations.relu_backward


class LeakyReLU(Activation):
    """x for x > 0, negative_slope * x otherwise (Maas et al. 2013)."""

    forward_op = activations.leaky_relu
    backward_op = activations.leaky_relu_backward

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__(negative_slope=negative_slope)


class ReLU6(Activation):
    """min(max(x, 0), 6), as in MobileNet."""

    forward_op = activations.relu6
    backward_op = activations.relu6_backward


class GELU(Activation):
    """x * Phi(x) (Hendrycks & Gimpel 2016); approximate='tanh' uses the tanh formula."""

    forward_op = activations.gelu
    backward_op = activations.gelu_backward

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")
        super().__init__(approximate=approximate)


class Sigmoid(Activation):
    """1 / (1 + exp(-x))."""

    forward_op = activations.sigmoid
    backward_op = activations.sigmoid_backward


class Tanh(Activation):
    """tanh(x)."""

    forward_op = activations.tanh
    backward_op = activations.tanh_backward
