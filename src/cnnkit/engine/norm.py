"""Batch normalisation (Ioffe & Szegedy 2015) over (N, C) or (N, C, H, W), with torch's semantics.

Training normalises with the batch's biased variance and updates the running statistics in place
with the unbiased one (momentum = weight of the new batch, as torch); evaluation uses the running
statistics, which makes the layer a fixed per-channel affine map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class BatchNormCache:
    """What batch_norm_backward needs: normalised input, 1/sqrt(var + eps), gamma and the mode."""

    x_hat: np.ndarray
    inv_std: np.ndarray  # (C,)
    gamma: np.ndarray  # (C,)
    training: bool


def _channel_axes(x: np.ndarray) -> tuple[int, ...]:
    """Axes the statistics reduce over: all but the channel axis 1."""
    if x.ndim == 2:
        return (0,)
    if x.ndim == 4:
        return (0, 2, 3)
    raise ValueError(f"x must be (N, C) or (N, C, H, W), got shape {x.shape}")


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a (C,) vector to broadcast against an (N, C) or (N, C, H, W) array."""
    return v.reshape(-1, 1, 1) if ndim == 4 else v


def batch_norm(
    x: np.ndarray,
    gamma: Optional[np.ndarray],
    beta: Optional[np.ndarray],
    running_mean: Optional[np.ndarray],
    running_var: Optional[np.ndarray],
    *,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, BatchNormCache]:
    """Normalise each channel of `x`, then scale by gamma and shift by beta: (y, cache).

    gamma/beta None mean 1/0 (affine=False); running_mean/running_var None mean no tracking
    (batch statistics are then used in evaluation too, as torch does).
    """
    axes = _channel_axes(x)
    channels = x.shape[1]
    gamma = np.ones(channels, x.dtype) if gamma is None else gamma.astype(x.dtype, copy=False)
    beta = np.zeros(channels, x.dtype) if beta is None else beta.astype(x.dtype, copy=False)
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        if v is not None and v.shape != (channels,):
            raise ValueError(f"{name} must have shape ({channels},), got {v.shape}")
    use_batch_stats = training or running_mean is None or running_var is None
    if use_batch_stats:
        count = x.size // channels
        if training and count < 2:
            raise ValueError(f"batch_norm in training needs more than 1 value per channel, got x of shape {x.shape}")
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        if training and running_mean is not None and running_var is not None:
            unbiased = var * (count / (count - 1))
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * unbiased
    else:
        mean = running_mean.astype(x.dtype, copy=False)
        var = running_var.astype(x.dtype, copy=False)
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype, copy=False)
    x_hat = (x - _per_channel(mean, x.ndim)) * _per_channel(inv_std, x.ndim)
    y = x_hat * _per_channel(gamma, x.ndim) + _per_channel(beta, x.ndim)
    return y, BatchNormCache(x_hat, inv_std, gamma, use_batch_stats)


def batch_norm_backward(dy: np.ndarray, cache: BatchNormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dx, dgamma, dbeta) of batch_norm given dy of x's shape.

    With batch statistics the mean and variance depend on x, giving the three-term formula
    dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)); with running
    statistics they are constants and dx = dx_hat * inv_std.
    """
    x_hat = cache.x_hat
    if dy.shape != x_hat.shape:
        raise ValueError(f"dy must have shape {x_hat.shape}, got {dy.shape}")
    axes = _channel_axes(x_hat)
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * x_hat).sum(axis=axes)
    scale = _per_channel(cache.gamma * cache.inv_std, x_hat.ndim)
    if not cache.training:
        return (dy * scale).astype(x_hat.dtype, copy=False), dgamma, dbeta
    count = x_hat.size // x_hat.shape[1]
    mean_dy = _per_channel(dbeta / count, x_hat.ndim)
    mean_dy_xhat = _per_channel(dgamma / count, x_hat.ndim)
    dx = scale * (dy - mean_dy - x_hat * mean_dy_xhat)
    return dx.astype(x_hat.dtype, copy=False), dgamma, dbeta
