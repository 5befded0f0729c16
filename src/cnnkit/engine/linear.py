"""Fully connected layer y = x w^T + b, with w stored (out, in) as torch does."""

from __future__ import annotations

from typing import Optional

import numpy as np


def _check(x: np.ndarray, w: np.ndarray) -> None:
    """Raise ValueError unless x is (N, in) and w is (out, in)."""
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"linear needs x (N, in) and w (out, in) with matching 'in', got {x.shape} and {w.shape}")


def linear(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None) -> np.ndarray:
    """(N, in) x, (out, in) w, optional (out,) b -> (N, out)."""
    _check(x, w)
    y = x @ w.astype(x.dtype, copy=False).T
    if b is not None:
        if b.shape != (w.shape[0],):
            raise ValueError(f"b must have shape ({w.shape[0]},), got {b.shape}")
        y += b.astype(x.dtype, copy=False)
    return y


def linear_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dx (N, in), dw (out, in), db (out,)) given dy of shape (N, out)."""
    _check(x, w)
    if dy.shape != (x.shape[0], w.shape[0]):
        raise ValueError(f"dy must have shape {(x.shape[0], w.shape[0])}, got {dy.shape}")
    dy = dy.astype(x.dtype, copy=False)
    return dy @ w.astype(x.dtype, copy=False), dy.T @ x, dy.sum(axis=0)
