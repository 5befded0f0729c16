"""Classification metrics accumulated over batches: loss, top-1, top-k, per-class accuracy, confusion."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ClassificationMeter:
    """Accumulates a confusion matrix (true x predicted) and top-k hits over an epoch."""

    num_classes: int
    top_k: int = 5
    loss_sum: float = 0.0
    count: int = 0
    topk_hits: int = 0
    confusion: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss: float) -> None:
        """logits (N, K); targets (N,) class indices; loss the batch mean."""
        logits, targets = logits.detach().float().cpu(), targets.detach().cpu()
        n = targets.numel()
        self.loss_sum += loss * n
        self.count += n
        predicted = logits.argmax(dim=1)
        self.confusion += torch.bincount(
            targets * self.num_classes + predicted, minlength=self.num_classes**2
        ).reshape(self.num_classes, self.num_classes)
        if self.num_classes > self.top_k:
            top = logits.topk(self.top_k, dim=1).indices
            self.topk_hits += int((top == targets[:, None]).any(dim=1).sum())

    def merge_counts(self) -> torch.Tensor:
        """The raw counts as one float64 vector, so ranks can sum them with one all-reduce."""
        return torch.cat(
            [torch.tensor([self.loss_sum, self.count, self.topk_hits], dtype=torch.float64),
             self.confusion.flatten().double()]
        )

    def load_counts(self, counts: torch.Tensor) -> None:
        self.loss_sum, count, hits = counts[:3].tolist()
        self.count, self.topk_hits = int(count), int(hits)
        self.confusion = counts[3:].round().long().reshape(self.num_classes, self.num_classes)

    def compute(self, prefix: str = "") -> dict[str, float]:
        """{prefix}loss, {prefix}top1, {prefix}top5 (when K > 5), as fractions in [0, 1]."""
        if self.count == 0:
            return {}
        metrics = {
            f"{prefix}loss": self.loss_sum / self.count,
            f"{prefix}top1": float(self.confusion.diagonal().sum()) / self.count,
        }
        if self.num_classes > self.top_k:
            metrics[f"{prefix}top{self.top_k}"] = self.topk_hits / self.count
        return metrics

    def per_class_accuracy(self) -> list[float]:
        """Recall of each class (NaN for a class with no samples)."""
        totals = self.confusion.sum(dim=1).double()
        return (self.confusion.diagonal().double() / totals).tolist()
