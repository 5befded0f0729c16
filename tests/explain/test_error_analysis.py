"""Streaming error analysis: equal to scikit-learn (fixture) and flat in memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError
from cnnkit.explain.error_analysis import (
    ErrorAccumulator,
    classification_report,
    most_confused,
    row_normalised,
)

FIXTURE = Path(__file__).parent / "fixtures" / "interpret_reference.json"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text())


def _logits_for(predicted: torch.Tensor, k: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(len(predicted), k, generator=generator) + 10 * F.one_hot(predicted, k)


def test_confusion_and_report_equal_scikit_learn(reference: dict) -> None:
    k = reference["num_classes"]
    labels, predicted = torch.tensor(reference["labels"]), torch.tensor(reference["predicted"])
    accumulator = ErrorAccumulator(k, top_k=5)
    logits = _logits_for(predicted, k)
    for start in range(0, len(labels), 37):  # uneven batches
        accumulator.update(logits[start:start + 37], labels[start:start + 37])
    assert accumulator.confusion.tolist() == reference["confusion_matrix"]
    report = classification_report(accumulator.confusion)
    expected = reference["classification_report"]
    for index, scores in enumerate(report.per_class):
        row = expected[str(index)]
        assert (scores.precision, scores.recall, scores.f1) == pytest.approx(
            (row["precision"], row["recall"], row["f1-score"]), abs=1e-12)
        assert scores.support == row["support"]
    for ours, name in ((report.macro, "macro avg"), (report.weighted, "weighted avg")):
        row = expected[name]
        assert (ours.precision, ours.recall, ours.f1, ours.support) == pytest.approx(
            (row["precision"], row["recall"], row["f1-score"], row["support"]), abs=1e-12)
    assert report.accuracy == pytest.approx(expected["accuracy"], abs=1e-12)


def test_most_confused_and_row_normalised(reference: dict) -> None:
    confusion = torch.tensor(reference["confusion_matrix"])
    pairs = most_confused(confusion, min_count=9)
    counts = [pair.count for pair in pairs]
    assert counts == sorted(counts, reverse=True) and pairs[0].count == 30 and (pairs[0].true, pairs[0].predicted) == (5, 4)
    assert all(pair.true != pair.predicted and pair.count >= 9 for pair in pairs)
    expected = sum(1 for t in range(6) for p in range(6) if t != p and confusion[t, p] >= 9)
    assert len(pairs) == expected
    shares = row_normalised(confusion)
    assert torch.allclose(shares[[0, 1, 2, 3, 5]].sum(dim=1), torch.ones(5, dtype=torch.float64))
    assert float(shares[4].sum()) == 0, "a class without samples has an empty row, not NaN"


def test_top_losses_are_the_exact_top_k_and_memory_stays_flat() -> None:
    """100k items streamed in batches: the heap holds k items and equals a full sort."""
    k, n, batch = 10, 100_000, 1000
    generator = torch.Generator().manual_seed(1)
    accumulator = ErrorAccumulator(k, top_k=8)
    all_losses = torch.empty(n)
    tracemalloc.start()
    accumulator.update(torch.randn(batch, k, generator=generator), torch.zeros(batch, dtype=torch.long))
    baseline, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    generator.manual_seed(1)
    accumulator = ErrorAccumulator(k, top_k=8)
    for start in range(0, n, batch):
        logits = torch.randn(batch, k, generator=generator) * 3
        targets = torch.randint(0, k, (batch,), generator=generator)
        all_losses[start:start + batch] = F.cross_entropy(logits, targets, reduction="none")
        accumulator.update(logits, targets)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak - baseline < 200_000, f"python memory grew by {peak - baseline} bytes over 100k items"
    top = accumulator.top_losses()
    expected = all_losses.topk(8)
    assert [item.index for item in top] == expected.indices.tolist()
    assert [item.loss for item in top] == pytest.approx(expected.values.tolist(), rel=1e-6)
    assert accumulator.seen == n and int(accumulator.confusion.sum()) == n


def test_top_loss_fields() -> None:
    accumulator = ErrorAccumulator(3, top_k=2)
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 1.0]])
    accumulator.update(logits, torch.tensor([0, 2, 2]), indices=torch.tensor([10, 11, 12]))
    worst = accumulator.top_losses()[0]
    assert (worst.index, worst.true, worst.predicted) == (11, 2, 1)
    assert worst.loss == pytest.approx(float(F.cross_entropy(logits[1:2], torch.tensor([2]))))
    assert worst.probability == pytest.approx(float(logits[1].softmax(0)[1]))
    with pytest.raises(CnnkitError, match="logits"):
        accumulator.update(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
