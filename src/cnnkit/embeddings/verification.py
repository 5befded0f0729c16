"""Verification metrics of pair scores (higher = more alike): ROC, AUC, EER, TAR at fixed FAR and
the LFW protocol's 10-fold accuracy (Huang et al. 2007: the threshold of each fold is chosen on
the other nine). FAR = impostor pairs accepted / impostor pairs; TAR = genuine accepted / genuine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError

FARS = (1e-2, 1e-3, 1e-4)


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds decreasing from +inf: accepting score >= threshold gives
    (fpr, tpr); one point per distinct score, as scikit-learn's roc_curve(drop_intermediate=False)."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_same = scores[order], same[order]
    last_of_value = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(scores) - 1]
    true_accepts = np.cumsum(sorted_same)[last_of_value]
    false_accepts = (last_of_value + 1) - true_accepts
    tpr = np.r_[0.0, true_accepts / max(1, same.sum())]
    fpr = np.r_[0.0, false_accepts / max(1, (~same).sum())]
    return fpr, tpr, np.r_[np.inf, sorted_scores[last_of_value]]


def _check(scores: Any, same: Any) -> tuple[np.ndarray, np.ndarray]:
    scores, same = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(same).ravel()
    if scores.shape != same.shape:
        raise CnnkitError(f"scores ({scores.size}) and same ({same.size}) must have one entry per pair")
    same = same.astype(bool)
    if same.all() or not same.any():
        raise CnnkitError("verification needs both genuine (same) and impostor (different) pairs")
    if not np.isfinite(scores).all():
        raise CnnkitError("scores contain NaN or infinity")
    return scores, same


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) where FAR = FRR (FRR = 1 - TAR), linearly interpolated between ROC points."""
    frr = 1.0 - tpr
    i = int(np.argmax(fpr >= frr))  # first point where FAR has caught up with FRR (i >= 1)
    gap_before, gap_after = frr[i - 1] - fpr[i - 1], fpr[i] - frr[i]
    t = gap_before / (gap_before + gap_after) if gap_before + gap_after > 0 else 0.0
    eer = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    upper = thresholds[i - 1] if np.isfinite(thresholds[i - 1]) else thresholds[i]
    return float(eer), float(upper + t * (thresholds[i] - upper))


def best_accuracy_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising the accuracy of "same if score >= threshold"."""
    fpr, tpr, thresholds = roc_curve(scores, same)
    positives, negatives = same.sum(), (~same).sum()
    accuracy = (tpr * positives + (1 - fpr) * negatives) / len(scores)
    best = int(np.argmax(accuracy))
    threshold = thresholds[best] if np.isfinite(thresholds[best]) else np.nextafter(scores.max(), np.inf)
    return float(threshold), float(accuracy[best])


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, *, folds: int = 10) -> tuple[float, float, float]:
    """(mean accuracy, its std, mean threshold) over `folds` folds (pair i in fold i % folds), each
    fold scored at the threshold that is best on the other folds."""
    fold_of = np.arange(len(scores)) % folds
    accuracies, thresholds = [], []
    for fold in range(folds):
        test, train = fold_of == fold, fold_of != fold
        if not test.any():
            continue
        threshold, _ = best_accuracy_threshold(scores[train], same[train])
        accuracies.append(float(((scores[test] >= threshold) == same[test]).mean()))
        thresholds.append(threshold)
    return float(np.mean(accuracies)), float(np.std(accuracies)), float(np.mean(thresholds))


def verification_metrics(scores: Any, same: Any, *, fars: Sequence[float] = FARS,
                         folds: int = 10, roc_points: int = 1000) -> dict[str, Any]:
    """auc, eer, eer_threshold, tar_at_far_{far} (None when there are fewer than 1/far impostor
    pairs to measure it), threshold_at_far_{far}, accuracy (k-fold mean), accuracy_std,
    threshold (best accuracy on all pairs: the one `cnnkit verify` stores), genuine/impostor
    counts, and the ROC curve as lists fpr, tpr (thinned to about `roc_points` points)."""
    scores, same = _check(scores, same)
    if folds < 2:
        raise CnnkitError(f"folds must be >= 2 (each fold's threshold comes from the others), got {folds}")
    if not all(0 < far < 1 for far in fars):
        raise CnnkitError(f"fars must lie in (0, 1), got {tuple(fars)}")
    fpr, tpr, thresholds = roc_curve(scores, same)
    eer, eer_threshold = equal_error_rate(fpr, tpr, thresholds)
    impostors = int((~same).sum())
    result: dict[str, Any] = {"auc": float(np.trapezoid(tpr, fpr)), "eer": eer, "eer_threshold": eer_threshold}
    for far in fars:
        measurable = impostors * far >= 1
        allowed = np.nonzero(fpr <= far)[0][-1]  # the most lenient threshold still within the FAR
        result[f"tar_at_far_{far:g}"] = float(tpr[allowed]) if measurable else None
        result[f"threshold_at_far_{far:g}"] = float(thresholds[allowed]) if measurable else None
    accuracy, accuracy_std, _ = kfold_accuracy(scores, same, folds=folds)
    threshold, _ = best_accuracy_threshold(scores, same)
    result.update({"accuracy": accuracy, "accuracy_std": accuracy_std, "threshold": threshold,
                   "genuine_pairs": int(same.sum()), "impostor_pairs": impostors,
                   "fpr": _thin(fpr, roc_points), "tpr": _thin(tpr, roc_points)})
    return result


def _thin(curve: np.ndarray, points: int) -> list[float]:
    """About `points` evenly spaced entries of a curve, both ends kept (for storing and plotting)."""
    if len(curve) <= points:
        return curve.tolist()
    return curve[np.unique(np.linspace(0, len(curve) - 1, points).round().astype(int))].tolist()
