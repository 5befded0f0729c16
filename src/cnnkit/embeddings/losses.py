"""Metric-learning losses on embeddings (N, D) and labels (N,): proxy (ArcFace, CosFace, normalised
softmax) and triplet with batch-hard or semi-hard mining.

Each equals pytorch-metric-learning 2.9.0's loss of the same name on the same batch and weights
(tests/embeddings/fixtures, made by tools/make_embedding_fixtures.py). Reductions, as in pml:
- proxy losses: the mean over the batch of the per-sample cross-entropy (pml's MeanReducer);
- triplet: max(d(a,p) - d(a,n) + margin, 0) over the mined triplets, averaged over the triplets
  whose loss is > 0 (pml's AvgNonZeroReducer), and 0 when none is (or nothing was mined).
  Distances are Euclidean between L2-normalised embeddings (pml's LpDistance default).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.errors import CnnkitError


def _wide(x: torch.Tensor) -> torch.Tensor:
    """float32 at least (half-precision logits from autocast), float64 kept."""
    return x if x.dtype == torch.float64 else x.float()


class ProxyLoss(nn.Module):
    """Softmax over cosines to one learned proxy per class; subclasses change the target logit.

    `weight` is (num_classes, D) like nn.Linear's (pml stores its transpose, W (D, num_classes)).
    """

    def __init__(self, num_classes: int, embedding_dim: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if num_classes < 1 or embedding_dim < 1:
            raise CnnkitError(f"a proxy loss needs num_classes >= 1 and embedding_dim >= 1, "
                              f"got {num_classes} and {embedding_dim}")
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        # Normal with std 1/sqrt(D): any start works, the proxies are normalised before use.
        with torch.no_grad():
            self.weight.normal_(0.0, 1.0 / math.sqrt(embedding_dim), generator=generator)

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine of each embedding (N, D) to each class proxy: (N, num_classes)."""
        weight = self.weight.to(torch.promote_types(embeddings.dtype, self.weight.dtype))
        return F.normalize(_wide(embeddings), dim=1) @ F.normalize(_wide(weight), dim=1).T

    def logits_from_cosines(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss_from_cosines(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss given `cosines` (N, K) from `self.cosines` (the trainer's model returns them)."""
        return F.cross_entropy(self.logits_from_cosines(_wide(cosines), labels), labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_from_cosines(self.cosines(embeddings), labels)


class ArcFaceLoss(ProxyLoss):
    """Additive angular margin (Deng et al. 2019): the target logit is s * cos(theta + m).

    Past theta > pi - m, cos(theta + m) would rise again; there the logit is s * (cos theta - m sin m)
    (insightface's and pml's "keep it monotonically decreasing" branch). `margin` in radians.
    cos(theta + m) is expanded as cos theta cos m - sin theta sin m (insightface's form): through
    acos (pml's) the gradient is NaN when an embedding lies on its proxy (d acos / d cos = -inf at 1).
    """

    def __init__(self, num_classes: int, embedding_dim: int, *, scale: float = 64.0, margin: float = 0.5,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(num_classes, embedding_dim, generator=generator)
        self.scale, self.margin = float(scale), float(margin)

    def logits_from_cosines(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = cosines.gather(1, labels[:, None]).clamp(-1.0, 1.0)
        # sin theta >= 0 from (1 - cos)(1 + cos); the floor keeps sqrt's gradient finite at 0.
        sine = ((1.0 - target) * (1.0 + target)).clamp_min(torch.finfo(target.dtype).tiny).sqrt()
        cos_m, sin_m = math.cos(self.margin), math.sin(self.margin)
        with_margin = torch.where(target >= -cos_m,  # theta <= pi - m
                                  target * cos_m - sine * sin_m, target - self.margin * sin_m)
        return self.scale * cosines.scatter(1, labels[:, None], with_margin)


class CosFaceLoss(ProxyLoss):
    """Large margin cosine loss (Wang et al. 2018): the target logit is s * (cos theta - m)."""

    def __init__(self, num_classes: int, embedding_dim: int, *, scale: float = 64.0, margin: float = 0.35,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(num_classes, embedding_dim, generator=generator)
        self.scale, self.margin = float(scale), float(margin)

    def logits_from_cosines(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = cosines.gather(1, labels[:, None])
        return self.scale * cosines.scatter(1, labels[:, None], target - self.margin)


class NormSoftmaxLoss(ProxyLoss):
    """Normalised softmax (Zhai & Wu 2019): cosines divided by a temperature, no margin."""

    def __init__(self, num_classes: int, embedding_dim: int, *, temperature: float = 0.05,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(num_classes, embedding_dim, generator=generator)
        if temperature <= 0:
            raise CnnkitError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def logits_from_cosines(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cosines / self.temperature


def _distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (N, N) between L2-normalised rows, from the cosine: sqrt(2 - 2 cos)."""
    unit = F.normalize(_wide(embeddings), dim=1)
    return (2.0 - 2.0 * unit @ unit.T).clamp_min(1e-12).sqrt()


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) masks (N, N): same label but not itself; different label."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def batch_hard_triplets(distances: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per anchor, its farthest positive and nearest negative (Hermans et al. 2017); anchors that
    have no positive or no negative in the batch are dropped. Returns (anchor, positive, negative)."""
    positive, negative = _masks(labels)
    hardest_positive = distances.masked_fill(~positive, -math.inf).argmax(dim=1)
    hardest_negative = distances.masked_fill(~negative, math.inf).argmin(dim=1)
    anchors = torch.nonzero(positive.any(dim=1) & negative.any(dim=1)).flatten()
    return anchors, hardest_positive[anchors], hardest_negative[anchors]


def semihard_triplets(distances: torch.Tensor, labels: torch.Tensor, margin: float) -> tuple[torch.Tensor, ...]:
    """Every triplet whose negative is farther than the positive but inside the margin:
    d(a,p) < d(a,n) <= d(a,p) + margin (Schroff et al. 2015, sec. 3.2; pml's TripletMarginMiner
    'semihard' keeps all of them rather than one negative per pair). Memory: (N, N, N) floats and
    bools, about 8 bytes per (a, p, n) at the peak (a batch of 256: 0.13 GB; 1024: 9 GB)."""
    positive, negative = _masks(labels)
    gap = distances[:, None, :] - distances[:, :, None]  # [a, p, n] = d(a,n) - d(a,p)
    keep = positive[:, :, None] & negative[:, None, :] & (gap > 0) & (gap <= margin)
    return torch.where(keep)


class TripletLoss(nn.Module):
    """Triplet margin loss on mined triplets: mining "batch_hard" or "semihard" (see above)."""

    def __init__(self, *, margin: float = 0.2, mining: str = "batch_hard") -> None:
        super().__init__()
        if mining not in ("batch_hard", "semihard"):
            raise CnnkitError(f"triplet mining must be 'batch_hard' or 'semihard', got {mining!r}")
        if margin <= 0:
            raise CnnkitError(f"triplet margin must be > 0, got {margin}")
        self.margin, self.mining = float(margin), mining

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        distances = _distances(embeddings)
        with torch.no_grad():
            if self.mining == "batch_hard":
                anchor, pos, neg = batch_hard_triplets(distances, labels)
            else:
                anchor, pos, neg = semihard_triplets(distances, labels, self.margin)
        losses = F.relu(distances[anchor, pos] - distances[anchor, neg] + self.margin)
        active = losses[losses > 0]
        # Zero loss still flows through the graph, so backward works on a batch with nothing mined.
        return active.mean() if len(active) else embeddings.sum() * 0.0


LOSSES = ("arcface", "cosface", "normsoftmax", "triplet")


def check_loss_options(name: str, *, margin: float | None = None, scale: float | None = None,
                       mining: str | None = None) -> None:
    """Refuse, naming the flag, a setting the loss would ignore (normsoftmax has no margin, triplet
    no scale, only triplet mines) or cannot use (a scale <= 0 turns the softmax around)."""
    if name not in LOSSES:
        raise CnnkitError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    if margin is not None and name == "normsoftmax":
        raise CnnkitError("--margin does not apply to normsoftmax (it has none; --scale is its 1/temperature)")
    if scale is not None and name == "triplet":
        raise CnnkitError("--scale does not apply to triplet (it compares distances with --margin)")
    if mining is not None and name != "triplet":
        raise CnnkitError(f"--mining applies to the triplet loss only, not {name}")
    if scale is not None and scale <= 0:
        raise CnnkitError(f"--scale must be > 0, got {scale}")


def make_loss(name: str, num_classes: int, embedding_dim: int, *, margin: float | None = None,
              scale: float | None = None, mining: str | None = None,
              generator: torch.Generator | None = None) -> nn.Module:
    """A loss by its CLI name; margin/scale/mining None keep each loss's published default."""
    check_loss_options(name, margin=margin, scale=scale, mining=mining)
    if name == "arcface":
        return ArcFaceLoss(num_classes, embedding_dim, scale=64.0 if scale is None else scale,
                           margin=0.5 if margin is None else margin, generator=generator)
    if name == "cosface":
        return CosFaceLoss(num_classes, embedding_dim, scale=64.0 if scale is None else scale,
                           margin=0.35 if margin is None else margin, generator=generator)
    if name == "normsoftmax":
        return NormSoftmaxLoss(num_classes, embedding_dim, temperature=0.05 if scale is None else 1.0 / scale,
                               generator=generator)
    return TripletLoss(margin=0.2 if margin is None else margin, mining=mining or "batch_hard")
