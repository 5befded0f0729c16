"""Monte Carlo dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation"): predictive
uncertainty from several stochastic forward passes with only the dropout layers active."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.targets import in_model_dtype
from cnnkit.models.modes import modes_kept


@dataclass(frozen=True)
class McDropoutResult:
    """Per image (N, K) `mean` and `std` of the class probabilities over samples; (N,) predictive
    `entropy` H[mean] and `mutual_information` H[mean] - mean H[sample] (the epistemic part), in nats."""

    mean: torch.Tensor
    std: torch.Tensor
    entropy: torch.Tensor
    mutual_information: torch.Tensor


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The model's dropout modules (nn.Dropout, Dropout1d/2d/3d, AlphaDropout...)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


@contextlib.contextmanager
def dropout_active(model: nn.Module) -> Iterator[None]:
    """Model in eval mode with only its dropout layers in training mode; every module's own
    mode is restored on exit. BatchNorm stays in eval, so its running statistics never change."""
    layers = dropout_layers(model)
    if not layers:
        raise CnnkitError(f"{type(model).__name__} has no dropout layer (nn.Dropout): MC dropout needs one "
                          "(dropout written as F.dropout inside forward cannot be switched on alone)")
    with modes_kept(model):
        model.eval()
        for layer in layers:
            layer.train()
        yield


def _entropy(probabilities: torch.Tensor) -> torch.Tensor:
    return -(probabilities * probabilities.clamp_min(1e-30).log()).sum(dim=-1)


@torch.no_grad()
def mc_dropout(model: nn.Module, images: torch.Tensor, *, samples: int = 10,
               generator: torch.Generator | None = None) -> McDropoutResult:
    """`samples` forward passes of `images` (N, C, H, W) with dropout on; the dropout masks are
    drawn from a seed taken from `generator` (the global RNG state is left untouched)."""
    if samples < 1:
        raise CnnkitError(f"samples must be >= 1, got {samples}")
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise CnnkitError(f"images must be a float tensor, got {getattr(images, 'dtype', type(images).__name__)}")
    images = in_model_dtype(model, images)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    devices = [images.device] if images.device.type == "cuda" else []
    with dropout_active(model), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        draws = torch.stack([model(images).float().softmax(dim=1) for _ in range(samples)])
    mean = draws.mean(dim=0)
    entropy = _entropy(mean)
    return McDropoutResult(mean=mean, std=draws.std(dim=0, unbiased=False), entropy=entropy,
                           mutual_information=(entropy - _entropy(draws).mean(dim=0)).clamp_min(0))
