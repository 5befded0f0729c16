"""Softmax, log-softmax and the softmax cross-entropy loss (with label smoothing, Szegedy et al. 2016)."""

from __future__ import annotations

import numpy as np


def log_softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """log(softmax(x)) computed stably: x - max - log(sum(exp(x - max)))."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """exp(x) / sum(exp(x)) along `axis`, shifted by the max so exp never overflows."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_cross_entropy(
    logits: np.ndarray, targets: np.ndarray, label_smoothing: float = 0.0
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of (N, K) logits against (N,) integer classes: (loss, dloss/dlogits).

    Equals torch.nn.functional.cross_entropy: with smoothing eps the target distribution is
    (1 - eps) * one_hot + eps / K, and the gradient is (softmax - target) / N.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {logits.shape}")
    n, k = logits.shape
    targets = np.asarray(targets)
    if targets.shape != (n,) or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be an integer array of shape ({n},), got {targets.dtype} {targets.shape}")
    if n and (targets.min() < 0 or targets.max() >= k):
        raise ValueError(f"targets must be class indices in [0, {k}), got range [{targets.min()}, {targets.max()}]")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    target_dist = np.full((n, k), label_smoothing / k, dtype=logits.dtype)
    target_dist[np.arange(n), targets] += 1.0 - label_smoothing
    log_probs = log_softmax(logits, axis=1)
    loss = float(-(target_dist * log_probs).sum() / n)
    dlogits = (np.exp(log_probs) - target_dist) / logits.dtype.type(n)
    return loss, dlogits.astype(logits.dtype, copy=False)
