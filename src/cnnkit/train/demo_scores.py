"""The demo's scores on imbalanced data: accuracy, macro-F1, per-class recall and the confusion
table of one model on one split, and the side-by-side views the demo prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The demo's splits, in print order: in-distribution train and test, and the shifted control.
SPLIT_TITLES = {"train": "train", "test": "test", "shifted": "shifted test"}


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts: entry [t, p] = samples of class t predicted as p."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_recall(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class (true row's diagonal share); NaN for a class absent from the split."""
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / support, np.nan)


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean of per-class F1 = 2 TP / (2 TP + FP + FN) over the classes that occur in
    the labels or predictions (scikit-learn's `f1_score(average="macro")`, zero_division=0)."""
    tp = np.diag(confusion).astype(np.float64)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    present = (tp + fp + fn) > 0
    return float(np.mean(2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])))


@dataclass(frozen=True)
class SplitScores:
    """One model on one split: accuracy, macro-F1, per-class recall and the confusion matrix."""

    accuracy: float
    macro_f1: float
    recall: tuple[float, ...]
    confusion: np.ndarray

    @classmethod
    def of(cls, predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> SplitScores:
        confusion = confusion_matrix(predictions, labels, num_classes)
        return cls(accuracy=float(np.trace(confusion) / max(1, confusion.sum())), macro_f1=macro_f1(confusion),
                   recall=tuple(float(r) for r in per_class_recall(confusion)), confusion=confusion)


@dataclass(frozen=True)
class ModelScores:
    """A trained model's scores on each demo split (keys of `SPLIT_TITLES`)."""

    name: str
    parameters: int
    splits: dict[str, SplitScores]
    seconds: float


def format_side_by_side(models: Sequence[ModelScores], moved: Sequence[int], class_names: Sequence[str]) -> str:
    """Accuracy and macro-F1 of each model on train, test and shifted test, and the mean recall of
    the `moved` classes (whose defects sit elsewhere in the shifted test)."""
    moved_names = "+".join(class_names[k] for k in moved)
    header = (f"{'model':<12} {'parameters':>10}  {'train acc':>9} {'test acc':>8} {'test F1':>7}  "
              f"{'shifted acc':>11} {'shifted F1':>10}  {moved_names + ' recall test -> shifted':>30}")
    lines = [header]
    for m in models:
        s = m.splits
        moved_recall = [float(np.nanmean([s[split].recall[k] for k in moved])) for split in ("test", "shifted")]
        lines.append(f"{m.name:<12} {m.parameters:>10,}  {100 * s['train'].accuracy:>8.1f}% "
                     f"{100 * s['test'].accuracy:>7.1f}% {s['test'].macro_f1:>7.3f}  "
                     f"{100 * s['shifted'].accuracy:>10.1f}% {s['shifted'].macro_f1:>10.3f}  "
                     f"{100 * moved_recall[0]:>20.1f}% -> {100 * moved_recall[1]:>5.1f}%")
    return "\n".join(lines)


def format_recall_table(models: Sequence[ModelScores], class_names: Sequence[str]) -> str:
    """Per-class recall (%) of each model on the test and the shifted test, one row per class."""
    columns = [(m, split) for m in models for split in ("test", "shifted")]
    width = max(len(n) for n in class_names)
    titles = [f"{m.name} {'shifted' if split == 'shifted' else 'test'}" for m, split in columns]
    column_width = max(12, *(len(t) for t in titles))
    lines = [" " * width + "  " + " ".join(f"{t:>{column_width}}" for t in titles)]
    for k, name in enumerate(class_names):
        cells = [m.splits[split].recall[k] for m, split in columns]
        lines.append(f"{name:>{width}}  " + " ".join(
            f"{'-':>{column_width}}" if np.isnan(c) else f"{100 * c:>{column_width - 1}.1f}%" for c in cells))
    return "\n".join(lines)
