"""Class weights and a balanced sampler for imbalanced data.

Weights are inverse class frequencies normalised so that the weighted item count of every
class equals N / K (the "balanced" heuristic of King & Zeng, 2001, as in scikit-learn): the
mean weight over items is 1, so a weighted loss keeps its scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler


def class_counts(targets: Sequence[int], num_classes: int) -> np.ndarray:
    """Items per class, (K,) int64; labels outside 0..K-1 are an error."""
    labels = np.asarray(targets, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    return np.bincount(labels, minlength=num_classes)


def class_weights(targets: Sequence[int], num_classes: int) -> torch.Tensor:
    """Per-class weights (K,) float32, N / (K * n_k); a class with no items gets weight 0."""
    counts = class_counts(targets, num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def balanced_item_weights(targets: Sequence[int], num_classes: int | None = None) -> torch.Tensor:
    """(N,) float64 drawing weights, inverse to each item's class frequency (its class weight):
    every class is drawn equally often on average."""
    labels = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if len(labels) else 0
    return class_weights(targets, num_classes).double()[labels]


def balanced_sampler(
    targets: Sequence[int],
    num_classes: int,
    *,
    generator: torch.Generator,
    num_samples: int | None = None,
    replacement: bool = True,
) -> WeightedRandomSampler:
    """A sampler drawing every class equally often on average (item weight = its class weight).

    `generator` makes the draw reproducible; `num_samples` defaults to the dataset size.
    """
    item_weights = balanced_item_weights(targets, num_classes)
    return WeightedRandomSampler(
        item_weights,
        num_samples=len(item_weights) if num_samples is None else num_samples,
        replacement=replacement,
        generator=generator,
    )
