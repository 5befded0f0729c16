"""Stochastic depth: drop a residual branch at random while training, per sample.

Huang et al. 2016, "Deep Networks with Stochastic Depth". Kept samples are scaled by 1 / (1 - p)
so the expectation equals the input and evaluation needs no rescaling (torchvision's
`StochasticDepth(p, mode)`; no parameters, so it never changes a state dict).
"""

from __future__ import annotations

import torch
from torch import nn

MODES = ("row", "batch")


def stochastic_depth(
    x: torch.Tensor,
    p: float,
    mode: str = "row",
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(N, ...) -> (N, ...): zero each sample ("row") or the whole batch ("batch") with probability `p`.

    Identity when `training` is False or `p == 0`. `generator` seeds the Bernoulli draws
    (None: torch's global generator).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"stochastic depth probability p must be in [0, 1], got {p}")
    if mode not in MODES:
        raise ValueError(f"stochastic depth mode must be one of {MODES}, got {mode!r}")
    if not training or p == 0.0:
        return x
    survival_rate = 1.0 - p
    size = [x.shape[0]] + [1] * (x.ndim - 1) if mode == "row" else [1] * x.ndim
    keep = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival_rate, generator=generator)
    if survival_rate > 0.0:
        keep.div_(survival_rate)
    return x * keep


class StochasticDepth(nn.Module):
    """Module form of `stochastic_depth`; active only in `train()` mode, drawing from torch's global RNG."""

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"stochastic depth probability p must be in [0, 1], got {p}")
        if mode not in MODES:
            raise ValueError(f"stochastic depth mode must be one of {MODES}, got {mode!r}")
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stochastic_depth(x, self.p, self.mode, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"
