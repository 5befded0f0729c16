"""Inverted dropout (Srivastava et al. 2014): scale the kept units at training time, not at test time."""

from __future__ import annotations

import numpy as np


def dropout(x: np.ndarray, p: float, *, training: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Zero each entry with probability p and scale survivors by 1/(1-p): (y, mask).

    The mask already holds 0 or 1/(1-p); it is all ones (y = x) when not training or p = 0,
    and all zeros when p = 1 (as torch).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x.copy(), np.ones_like(x)
    if p == 1.0:
        return np.zeros_like(x), np.zeros_like(x)
    keep = rng.random(x.shape) >= p
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """dy * mask: the same units are dropped and scaled as in the forward pass."""
    if dy.shape != mask.shape:
        raise ValueError(f"dy shape {dy.shape} does not match the dropout mask's {mask.shape}")
    return dy * mask
