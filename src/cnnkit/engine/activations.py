"""Elementwise activations and their derivatives, with torch's gradient conventions at the kinks.

Every backward takes the forward INPUT x (not the output), so callers cache one array per layer.
"""

from __future__ import annotations

import math

import numpy as np

from cnnkit.engine._special import erf

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715  # Hendrycks & Gimpel (2016), tanh approximation of GELU


def _upstream(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dy in x's dtype; ValueError unless it has x's shape (broadcasting would hide a wrong dy)."""
    if np.shape(dy) != x.shape:
        raise ValueError(f"dy must have the input's shape {x.shape}, got {np.shape(dy)}")
    return np.asarray(dy).astype(x.dtype, copy=False)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0)."""
    return np.maximum(x, 0)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dy where x > 0, else 0 (relu'(0) = 0, as torch)."""
    return np.where(x > 0, _upstream(dy, x), 0).astype(x.dtype, copy=False)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """x for x > 0, negative_slope * x otherwise."""
    return np.where(x > 0, x, x * x.dtype.type(negative_slope))


def leaky_relu_backward(dy: np.ndarray, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """dy for x > 0, negative_slope * dy otherwise (the slope at 0 is negative_slope, as torch)."""
    dy = _upstream(dy, x)
    return np.where(x > 0, dy, dy * x.dtype.type(negative_slope)).astype(x.dtype, copy=False)


def relu6(x: np.ndarray) -> np.ndarray:
    """min(max(x, 0), 6), the clipped ReLU of MobileNet (Howard et al. 2017)."""
    return np.clip(x, 0, 6).astype(x.dtype, copy=False)


def relu6_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dy where 0 < x < 6, else 0 (torch's hardtanh convention: zero at both kinks)."""
    return np.where((x > 0) & (x < 6), _upstream(dy, x), 0).astype(x.dtype, copy=False)


def _check_approximate(approximate: str) -> None:
    """Raise ValueError for a GELU variant torch does not have."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """x * Phi(x) (Hendrycks & Gimpel 2016); approximate='tanh' uses their tanh formula."""
    _check_approximate(approximate)
    x64 = x.astype(np.float64, copy=False)
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x64 + _GELU_TANH_CUBIC * x64**3)
        y = 0.5 * x64 * (1.0 + np.tanh(inner))
    else:
        y = 0.5 * x64 * (1.0 + erf(x64 / math.sqrt(2.0)))
    return y.astype(x.dtype, copy=False)


def gelu_backward(dy: np.ndarray, x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """dy * d/dx gelu(x): Phi(x) + x * phi(x) exactly, or the derivative of the tanh formula."""
    _check_approximate(approximate)
    dy = _upstream(dy, x)
    x64 = x.astype(np.float64, copy=False)
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x64 + _GELU_TANH_CUBIC * x64**3)
        t = np.tanh(inner)
        d_inner = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_CUBIC * x64**2)
        grad = 0.5 * (1.0 + t) + 0.5 * x64 * (1.0 - t * t) * d_inner
    else:
        cdf = 0.5 * (1.0 + erf(x64 / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * x64 * x64) / math.sqrt(2.0 * math.pi)
        grad = cdf + x64 * pdf
    return (dy * grad).astype(x.dtype, copy=False)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), evaluated without overflow for large |x|."""
    # exp of a non-positive number never overflows: use exp(-|x|) on both branches.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dy * s * (1 - s) with s = sigmoid(x)."""
    s = sigmoid(x)
    return _upstream(dy, x) * s * (1 - s)


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent."""
    return np.tanh(x)


def tanh_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dy * (1 - tanh(x)^2)."""
    t = np.tanh(x)
    return _upstream(dy, x) * (1 - t * t)
