"""Effective receptive field (Luo et al. 2016, "Understanding the Effective Receptive Field").

The gradient of the centre unit of the last feature map with respect to the input shows how
much each input pixel really influences it: a Gaussian-like blob whose radius grows like
sqrt(depth) while the theoretical receptive field grows like depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.analysis.receptive_field import ReceptiveFieldMode
from cnnkit.errors import CnnkitError


@dataclass(frozen=True)
class EffectiveRF:
    """Gradient map (H, W) of the centre output unit, its spread, and the theoretical RF.

    `gradient` is |d y_centre / d x| averaged over samples and input channels, normalised to sum
    to 1. `radius` is the radius (pixels, around the map's centre of mass) of the smallest disc
    holding `mass_fraction` of that mass; `std` is the root mean squared distance from it.
    """

    gradient: torch.Tensor
    centre: tuple[float, float]
    radius: float
    std: float
    mass_fraction: float
    theoretical_rf: tuple[int, int]

    @property
    def theoretical_radius(self) -> float:
        """Half the theoretical receptive field (larger axis), comparable with `radius`."""
        return (max(self.theoretical_rf) - 1) / 2

    @property
    def ratio(self) -> float:
        """Effective / theoretical radius: shrinks as a plain conv stack gets deeper."""
        return self.radius / self.theoretical_radius if self.theoretical_radius else math.inf


def _feature_map(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    # Zoo models expose their last feature map; any other model must itself return (N, C, h, w).
    features = model.forward_features(images) if hasattr(model, "forward_features") else model(images)
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        shape = getattr(features, "shape", type(features).__name__)
        raise CnnkitError(f"effective_receptive_field needs a (N, C, h, w) feature map; the model gave {shape}")
    return features


def _spread(gradient: torch.Tensor, mass_fraction: float) -> tuple[tuple[float, float], float, float]:
    height, width = gradient.shape
    rows = torch.arange(height, dtype=torch.float64).view(-1, 1).expand(height, width)
    cols = torch.arange(width, dtype=torch.float64).view(1, -1).expand(height, width)
    mass = gradient.to(torch.float64)
    centre = (float((mass * rows).sum()), float((mass * cols).sum()))
    distance = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2).sqrt().flatten()
    order = distance.argsort()
    cumulative = mass.flatten()[order].cumsum(0)
    index = int(torch.searchsorted(cumulative, torch.tensor(mass_fraction, dtype=torch.float64)))
    radius = float(distance[order][min(index, distance.numel() - 1)])
    std = float((mass.flatten() * distance**2).sum().sqrt())
    return centre, radius, std


def effective_receptive_field(
    model: nn.Module,
    input_size: tuple[int, int, int],
    *,
    generator: torch.Generator | None = None,
    num_samples: int = 8,
    mass_fraction: float = 0.95,
) -> EffectiveRF:
    """ERF of `model` for random N(0, 1) inputs of shape `input_size` (C, H, W), in eval mode.

    Runs on the model's device; only the input gets a gradient, so parameters' `.grad` and the
    model's train/eval mode are left as they were.
    """
    if num_samples < 1:
        raise CnnkitError(f"num_samples must be >= 1, got {num_samples}")
    if not 0.0 < mass_fraction <= 1.0:
        raise CnnkitError(f"mass_fraction must be in (0, 1], got {mass_fraction}")
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.get_default_dtype()
    images = torch.randn((num_samples, *input_size), generator=generator, dtype=dtype).to(device)
    images.requires_grad_(True)
    modes = {module: module.training for module in model.modules()}  # each its own (frozen BN stays eval)
    model.eval()
    try:
        with ReceptiveFieldMode() as rf_mode:
            rf_mode.track_input(images)
            features = _feature_map(model, images)
        info = rf_mode.info(features)
        centre_unit = features[:, :, features.shape[2] // 2, features.shape[3] // 2].sum()
        (gradient,) = torch.autograd.grad(centre_unit, images)
    finally:
        for module, training in modes.items():
            module.training = training
    gradient_map = gradient.abs().mean(dim=(0, 1)).detach().cpu()
    total = float(gradient_map.sum())
    if total == 0.0:
        raise CnnkitError("the centre unit's gradient is zero everywhere (dead network?); no ERF to measure")
    gradient_map = gradient_map / total
    centre, radius, std = _spread(gradient_map, mass_fraction)
    theoretical = info.rf if info is not None else (input_size[1], input_size[2])
    return EffectiveRF(gradient_map, centre, radius, std, mass_fraction, theoretical)
