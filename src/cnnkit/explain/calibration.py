"""How well predicted confidences match accuracy (ECE, MCE, NLL, Brier), and temperature scaling.

Binning follows torchmetrics' `MulticlassCalibrationError` (and Guo et al. 2017, "On Calibration
of Modern Neural Networks"): the top-1 confidence of each sample falls in one of `bins` equal-width
bins [k/bins, (k+1)/bins), closed on the left and open on the right, so a confidence of exactly
1.0 lands in an extra bin of its own ([1, 1]). ECE is the count-weighted mean of
|accuracy - confidence| over bins, MCE its maximum over non-empty bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnkit.errors import CnnkitError

DEFAULT_BINS = 15


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of top-1 confidence: `edges` (bins + 1,) from 0 to 1; `counts`,
    `accuracy` and `confidence` (bins + 1,), the last entry being the bin of confidence exactly 1
    (accuracy/confidence 0 where a bin is empty)."""

    edges: torch.Tensor
    counts: torch.Tensor
    accuracy: torch.Tensor
    confidence: torch.Tensor

    @property
    def weights(self) -> torch.Tensor:
        return self.counts / self.counts.sum()


def check_predictions(probabilities: torch.Tensor, labels: torch.Tensor, *, name: str = "probabilities") -> None:
    """Refuse anything but (N, K) values in [0, 1] with N labels in 0..K-1."""
    if probabilities.ndim != 2 or probabilities.shape[0] == 0:
        raise CnnkitError(f"{name} must be a non-empty (N, K) tensor, got shape {tuple(probabilities.shape)}")
    if labels.ndim != 1 or labels.shape[0] != probabilities.shape[0]:
        raise CnnkitError(f"labels must have shape ({probabilities.shape[0]},), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or int(labels.min()) < 0 or int(labels.max()) >= probabilities.shape[1]:
        raise CnnkitError(f"labels must be integer class indices in 0..{probabilities.shape[1] - 1}")
    if name == "probabilities":
        if not torch.isfinite(probabilities).all() or probabilities.min() < 0 or probabilities.max() > 1:
            raise CnnkitError("probabilities must lie in [0, 1] (pass softmax outputs, not logits)")
        if not torch.allclose(probabilities.double().sum(dim=1), torch.ones(1, dtype=torch.float64), atol=1e-3):
            raise CnnkitError("probabilities must sum to 1 over classes (each row)")


def reliability_bins(probabilities: torch.Tensor, labels: torch.Tensor, *, bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Accuracy and mean confidence of top-1 predictions per confidence bin (see module docstring)."""
    if bins < 1:
        raise CnnkitError(f"bins must be >= 1, got {bins}")
    check_predictions(probabilities, labels)
    confidence, predicted = probabilities.max(dim=1)
    edges = torch.linspace(0, 1, bins + 1, dtype=confidence.dtype)
    index = torch.bucketize(confidence, edges, right=True) - 1
    counts = torch.bincount(index, minlength=bins + 1).double()
    correct = (predicted == labels).double()
    sum_accuracy = torch.zeros(bins + 1, dtype=torch.float64).index_add_(0, index, correct)
    sum_confidence = torch.zeros(bins + 1, dtype=torch.float64).index_add_(0, index, confidence.double())
    filled = counts.clamp_min(1)
    return ReliabilityBins(edges.double(), counts, sum_accuracy / filled, sum_confidence / filled)


def calibration_metrics(probabilities: torch.Tensor, labels: torch.Tensor, *,
                        bins: int = DEFAULT_BINS) -> dict[str, float]:
    """ECE and MCE (binned as in the module docstring), NLL (mean -log p of the true class), Brier
    (mean over samples of sum over classes of (p - onehot)^2, in [0, 2]), accuracy and mean
    confidence of `probabilities` (N, K) against `labels` (N,)."""
    table = reliability_bins(probabilities, labels, bins=bins)
    gaps = (table.accuracy - table.confidence).abs()
    probabilities = probabilities.double()
    true_probability = probabilities.gather(1, labels.long()[:, None])[:, 0]
    onehot = torch.nn.functional.one_hot(labels.long(), probabilities.shape[1]).double()
    return {
        "ece": float((gaps * table.weights).sum()),
        "mce": float(gaps[table.counts > 0].max()),
        "nll": float(-true_probability.clamp_min(torch.finfo(torch.float64).tiny).log().mean()),
        "brier": float(((probabilities - onehot) ** 2).sum(dim=1).mean()),
        "accuracy": float((probabilities.argmax(dim=1) == labels).double().mean()),
        "confidence": float(probabilities.max(dim=1).values.mean()),
    }


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al. 2017), found
    by L-BFGS on log T (so T stays positive); `logits` (N, K), `labels` (N,). Argmax, hence
    accuracy, is unchanged by any T > 0. The NLL is convex in 1/T; it has no minimum (an error,
    not a tiny or a huge T) when every item is classified correctly (it keeps falling as T -> 0),
    or when the true class's logit is on average no higher than the mean logit (its slope at
    1/T = 0 is >= 0: it keeps falling as T -> infinity, towards uniform predictions whose ties
    would change the argmax)."""
    check_predictions(logits, labels, name="logits")
    if not torch.isfinite(logits).all():
        raise CnnkitError("logits must be finite")
    if bool((logits.argmax(dim=1) == labels).all()):
        raise CnnkitError(f"all {len(labels)} items are classified correctly: the NLL has no minimum over the "
                          "temperature (it keeps falling as T -> 0); fit it on data with some errors")
    logits, labels = logits.detach().double(), labels.long()
    evidence = float((logits.gather(1, labels[:, None])[:, 0] - logits.mean(dim=1)).mean())
    if evidence <= 0:
        raise CnnkitError(f"on these {len(labels)} items the true class's logit is on average {-evidence:.4g} below "
                          "the mean logit: the NLL has no minimum over the temperature (it keeps falling as "
                          "T -> infinity, towards uniform predictions); the model is no better than chance here")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return float(log_t.detach().exp())
