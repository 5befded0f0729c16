"""Where a classifier is wrong (fastai's ClassificationInterpretation), computed while streaming.

`ErrorAccumulator` keeps only the confusion counts and a bounded heap of the k largest losses
(dataset indices, not images), so memory stays flat however many images pass through; the images
of the top losses are re-read by index at the end. The classification report equals
scikit-learn's `classification_report(..., zero_division=0)` on the same predictions.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError


@dataclass(frozen=True, order=True)
class TopLoss:
    """One high-loss item: its `index` in the split, `true` and `predicted` class indices, the
    cross-entropy `loss`, and `probability` of the predicted class."""

    loss: float
    index: int
    true: int
    predicted: int
    probability: float


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall and F1 of one class (or an average of them) and its `support` (true items)."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationReport:
    """Per-class scores (in class order), accuracy, and the macro (unweighted) and weighted
    (by support) averages. An undefined ratio (no predictions, or no support) counts as 0."""

    per_class: tuple[ClassScores, ...]
    accuracy: float
    macro: ClassScores
    weighted: ClassScores


@dataclass(frozen=True)
class ConfusedPair:
    """`count` items of class `true` predicted as `predicted` (an off-diagonal confusion cell)."""

    true: int
    predicted: int
    count: int


class ErrorAccumulator:
    """Streams (logits, targets) batches: confusion counts plus the `top_k` largest losses."""

    def __init__(self, num_classes: int, *, top_k: int = 16) -> None:
        if num_classes < 1 or top_k < 0:
            raise CnnkitError(f"num_classes must be >= 1 and top_k >= 0, got {num_classes} and {top_k}")
        self.num_classes, self.top_k = num_classes, top_k
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.seen = 0
        self._heap: list[TopLoss] = []

    def update(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None) -> None:
        """logits (N, K), targets (N,); `indices` (N,) the items' dataset indices (default: the
        running position, for a loader that yields the dataset in order)."""
        logits, targets = logits.detach().float().cpu(), targets.detach().long().cpu()
        if logits.ndim != 2 or logits.shape[1] != self.num_classes or targets.shape != logits.shape[:1]:
            raise CnnkitError(f"expected logits (N, {self.num_classes}) and targets (N,), got "
                              f"{tuple(logits.shape)} and {tuple(targets.shape)}")
        if indices is None:
            indices = torch.arange(self.seen, self.seen + len(targets))
        self.seen += len(targets)
        predicted = logits.argmax(dim=1)
        self.confusion += torch.bincount(targets * self.num_classes + predicted,
                                         minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)
        if self.top_k == 0:
            return
        losses = F.cross_entropy(logits, targets, reduction="none")
        probability = logits.softmax(dim=1).gather(1, predicted[:, None])[:, 0]
        for position in losses.topk(min(self.top_k, len(losses))).indices.tolist():
            item = TopLoss(float(losses[position]), int(indices[position]), int(targets[position]),
                           int(predicted[position]), float(probability[position]))
            if len(self._heap) < self.top_k:
                heapq.heappush(self._heap, item)
            elif item.loss > self._heap[0].loss:
                heapq.heapreplace(self._heap, item)

    def top_losses(self) -> list[TopLoss]:
        """The kept items, largest loss first."""
        return sorted(self._heap, reverse=True)


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), torch.zeros_like(numerator))


def classification_report(confusion: torch.Tensor) -> ClassificationReport:
    """Precision, recall, F1 and support per class from a (K, K) confusion matrix (rows true,
    columns predicted), with accuracy and macro / weighted averages."""
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise CnnkitError(f"confusion must be a square (K, K) matrix, got shape {tuple(confusion.shape)}")
    counts = confusion.double()
    hits, support, predicted = counts.diagonal(), counts.sum(dim=1), counts.sum(dim=0)
    precision, recall = _ratio(hits, predicted), _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    total = float(support.sum())
    per_class = tuple(ClassScores(float(p), float(r), float(f), int(s))
                      for p, r, f, s in zip(precision, recall, f1, support))

    def average(weights: torch.Tensor) -> ClassScores:
        weights = weights / weights.sum() if float(weights.sum()) > 0 else weights
        return ClassScores(float((precision * weights).sum()), float((recall * weights).sum()),
                           float((f1 * weights).sum()), int(total))

    return ClassificationReport(per_class, float(hits.sum()) / total if total else 0.0,
                                average(torch.ones_like(support)), average(support))


def most_confused(confusion: torch.Tensor, *, min_count: int = 1, limit: int | None = None) -> list[ConfusedPair]:
    """Off-diagonal (true, predicted) cells with at least `min_count` items, most frequent first
    (ties in class order)."""
    pairs = [ConfusedPair(t, p, int(confusion[t, p])) for t in range(confusion.shape[0])
             for p in range(confusion.shape[1]) if t != p and int(confusion[t, p]) >= min_count]
    pairs.sort(key=lambda pair: (-pair.count, pair.true, pair.predicted))
    return pairs[:limit] if limit is not None else pairs


def row_normalised(confusion: torch.Tensor) -> torch.Tensor:
    """Each row divided by its total (the per-class recall on the diagonal); empty rows stay 0."""
    counts = confusion.double()
    return _ratio(counts, counts.sum(dim=1, keepdim=True).expand_as(counts))


def report_rows(report: ClassificationReport, class_names: Sequence[str]) -> list[tuple[str, ClassScores]]:
    """(name, scores) rows in display order: each class, then "macro avg" and "weighted avg"."""
    return [*zip(class_names, report.per_class), ("macro avg", report.macro), ("weighted avg", report.weighted)]
