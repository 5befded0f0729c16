"""One streaming pass of a run's model over a split: error analysis, examples per class, and
(optionally) the logits for calibration, which are (N, K) numbers, never images."""

from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass

import torch

from cnnkit.explain.error_analysis import (
    ClassificationReport,
    ConfusedPair,
    ErrorAccumulator,
    TopLoss,
    classification_report,
    most_confused,
)
from cnnkit.explain.run_access import RunWithData


@dataclass(frozen=True)
class Interpretation:
    """What `cnnkit interpret` reports for one split; `examples[c]` are dataset indices of the
    items of true class c the model is most sure of (for a per-class Grad-CAM gallery)."""

    split: str
    class_names: tuple[str, ...]
    confusion: torch.Tensor
    report: ClassificationReport
    confused: tuple[ConfusedPair, ...]
    top_losses: tuple[TopLoss, ...]
    mean_loss: float
    examples: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict:
        """JSON-ready form (class names instead of indices), as interpretation.json."""
        names, scores = self.class_names, dataclasses.asdict
        return {
            "split": self.split,
            "class_names": list(names),
            "accuracy": self.report.accuracy,
            "mean_loss": self.mean_loss,
            "confusion": self.confusion.tolist(),
            "per_class": {name: scores(s) for name, s in zip(names, self.report.per_class)},
            "macro_avg": scores(self.report.macro),
            "weighted_avg": scores(self.report.weighted),
            "most_confused": [{"true": names[p.true], "predicted": names[p.predicted], "count": p.count}
                              for p in self.confused],
            "top_losses": [{"index": t.index, "true": names[t.true], "predicted": names[t.predicted],
                            "loss": t.loss, "probability": t.probability} for t in self.top_losses],
        }


class _ExamplesPerClass:
    """For each true class, the `per_class` items with the highest probability of that class."""

    def __init__(self, num_classes: int, per_class: int) -> None:
        self.per_class = per_class
        self.heaps: list[list[tuple[float, int]]] = [[] for _ in range(num_classes)]

    def update(self, probabilities: torch.Tensor, targets: torch.Tensor, indices: range) -> None:
        true_probability = probabilities.gather(1, targets[:, None])[:, 0].tolist()
        for p, target, index in zip(true_probability, targets.tolist(), indices):
            heap = self.heaps[target]
            if len(heap) < self.per_class:
                heapq.heappush(heap, (p, -index))
            elif p > heap[0][0]:
                heapq.heapreplace(heap, (p, -index))

    def indices(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(-i for _, i in sorted(heap, reverse=True)) for heap in self.heaps)


@torch.no_grad()
def interpret_split(run: RunWithData, split: str, *, top_k: int = 16, examples_per_class: int = 0,
                    batch_size: int = 64, device: torch.device = torch.device("cpu"),
                    keep_logits: bool = False) -> tuple[Interpretation, torch.Tensor | None, torch.Tensor | None]:
    """Stream `split` once through the run's model. Returns the interpretation, and with
    `keep_logits` the (N, K) logits and (N,) labels (else None, None)."""
    k = len(run.class_names)
    model = run.model.to(device).eval()
    errors, examples = ErrorAccumulator(k, top_k=top_k), _ExamplesPerClass(k, examples_per_class)
    kept_logits, kept_labels, loss_sum = [], [], 0.0
    for images, targets in run.batches(split, batch_size=batch_size, device=device):
        logits = model(images).float().cpu()
        targets = targets.cpu()
        start = errors.seen
        errors.update(logits, targets)
        loss_sum += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
        if examples_per_class:
            examples.update(logits.softmax(dim=1), targets, range(start, errors.seen))
        if keep_logits:
            kept_logits.append(logits)
            kept_labels.append(targets)
    interpretation = Interpretation(
        split=split, class_names=tuple(run.class_names), confusion=errors.confusion,
        report=classification_report(errors.confusion), confused=tuple(most_confused(errors.confusion)),
        top_losses=tuple(errors.top_losses()), mean_loss=loss_sum / max(errors.seen, 1),
        examples=examples.indices(),
    )
    if not keep_logits:
        return interpretation, None, None
    return interpretation, torch.cat(kept_logits), torch.cat(kept_labels)


@torch.no_grad()
def split_logits(run: RunWithData, split: str, *, batch_size: int = 64,
                 device: torch.device = torch.device("cpu")) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) logits and (N,) labels of a whole split, for fitting a temperature."""
    model = run.model.to(device).eval()
    pairs = [(model(images).float().cpu(), targets.cpu())
             for images, targets in run.batches(split, batch_size=batch_size, device=device)]
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
