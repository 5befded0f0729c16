"""A minimal supervised loop for engine models: mini-batch epochs with softmax cross-entropy.

Returns numbers (loss, accuracy, logits); printing is left to the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cnnkit.engine.losses import softmax_cross_entropy
from cnnkit.engine.module import Module
from cnnkit.engine.optim import Optimizer


@dataclass(frozen=True)
class EpochStats:
    """Mean training loss and accuracy over one epoch (measured on the fly, in training mode)."""

    loss: float
    accuracy: float


def minibatch_indices(n: int, batch_size: int, *, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """Index arrays covering range(n) in batches of batch_size, shuffled by rng (in order if None)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train_epoch(
    model: Module,
    optimizer: Optimizer,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    rng: np.random.Generator,
    label_smoothing: float = 0.0,
) -> EpochStats:
    """One pass over (images (N, ...), labels (N,)) in shuffled mini-batches, one optimizer step each."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    model.train()
    total_loss, correct = 0.0, 0
    for batch in minibatch_indices(len(images), batch_size, rng=rng):
        logits = model(images[batch])
        loss, dlogits = softmax_cross_entropy(logits, labels[batch], label_smoothing=label_smoothing)
        optimizer.zero_grad()
        model.backward(dlogits)
        optimizer.step()
        total_loss += loss * len(batch)
        correct += int((logits.argmax(axis=1) == labels[batch]).sum())
    return EpochStats(loss=total_loss / len(images), accuracy=correct / len(images))


def predict_logits(model: Module, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """(N, ...) -> (N, num_classes) logits in eval mode; the model's previous mode is restored."""
    was_training = model.training
    model.eval()
    try:
        outputs = [model(images[batch]) for batch in minibatch_indices(len(images), batch_size, rng=None)]
    finally:
        model.train(was_training)
    return np.concatenate(outputs, axis=0)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the label."""
    return float((logits.argmax(axis=1) == labels).mean())
