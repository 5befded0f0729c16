"""The model-randomisation sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Layers are re-initialised one after another from the head down (cascading), and after each the
map of the same images and classes is compared with the trained model's by Spearman rank
correlation. A map that explains the model decorrelates as its weights are destroyed; one that
stays similar (an edge detector) does not depend on what the model learned.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.activation_maps import CAM_METHODS, cam
from cnnkit.explain.attributions import saliency
from cnnkit.explain.layers import eval_mode, resolve_target_layer
from cnnkit.explain.targets import Classes, Explainable, resolve_classes, unwrap

SANITY_METHODS: tuple[str, ...] = (*CAM_METHODS, "saliency")


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """(N, M) -> float64 ranks 0..M-1 along dim 1, ties sharing their average rank."""
    ranks = torch.empty(values.shape, dtype=torch.float64)
    for row, vector in enumerate(values.detach().cpu()):
        ordered, order = torch.sort(vector, stable=True)
        _, inverse, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
        end = counts.cumsum(0).double()
        average = end - (counts.double() + 1) / 2
        ranks[row, order] = average[inverse]
    return ranks


def spearman(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(N,) Spearman rank correlation of each pair of maps (N, ...): the Pearson correlation of
    their average ranks (scipy's convention); 0 where either map is constant (no order to share)."""
    if first.shape != second.shape:
        raise CnnkitError(f"maps differ in shape: {tuple(first.shape)} and {tuple(second.shape)}")
    a, b = average_ranks(first.flatten(1)), average_ranks(second.flatten(1))
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    norm = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(norm > 0, (a * b).sum(dim=1) / norm.clamp_min(1e-300), torch.zeros_like(norm))


@dataclass(frozen=True)
class SanityCheck:
    """`layers` in the order they were randomised (cumulatively); `correlation` (L, N): Spearman
    of each image's map after randomising layers[: l + 1] with the trained model's map."""

    method: str
    layers: tuple[str, ...]
    correlation: torch.Tensor

    def mean(self) -> list[float]:
        """Mean correlation over images after each randomised layer."""
        return self.correlation.mean(dim=1).tolist()


def parameter_layers(model: nn.Module) -> list[str]:
    """Modules holding parameters of their own, from the head down (reverse registration order)."""
    return [name for name, module in model.named_modules() if any(True for _ in module.parameters(recurse=False))][::-1]


def _randomise(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise each parameter with N(0, s^2), s the parameter's own standard deviation."""
    with torch.no_grad():
        for parameter in module.parameters(recurse=False):
            spread = parameter.std().item() if parameter.numel() > 1 else 1.0
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.copy_(noise * (spread if spread > 0 else 1.0))


def sanity_check(model: Explainable, images: Any, *, method: str = "gradcam", target_layer: str | nn.Module | None = None,
                 classes: Classes = None, class_names: Sequence[str] | None = None,
                 layers: Sequence[str] | None = None, generator: torch.Generator | None = None) -> SanityCheck:
    """Cascading randomisation (module docstring) of `layers` (default: `parameter_layers`, head
    first; a name randomises every parameter below it) on a copy of the model; the model itself
    is untouched. `generator` draws the new weights (default: seeded 0). Maps are `method`'s:
    a CAM method (normalised maps), or "saliency" (max of |gradient| over channels)."""
    if method not in SANITY_METHODS:
        raise CnnkitError(f"unknown method {method!r}; choose from {', '.join(SANITY_METHODS)}")
    module, images, names = unwrap(model, images, class_names)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    layer_name = resolve_target_layer(module, target_layer, images[:1])[0] if method != "saliency" else None
    with eval_mode(module), torch.no_grad():
        targets = resolve_classes(classes, module(images), names)
    copied = copy.deepcopy(module)
    modules = dict(copied.named_modules())
    chosen = list(layers) if layers is not None else parameter_layers(copied)
    if not chosen:
        raise CnnkitError(f"no layer to randomise (layers is empty, or the model has no parameters); layers with "
                          f"parameters: {', '.join(parameter_layers(copied)) or 'none'}")
    unknown = [name for name in chosen if name not in modules or not name]
    if unknown:
        raise CnnkitError(f"unknown layer(s) {unknown}; layers with parameters: {', '.join(parameter_layers(copied))}")

    def explain(net: nn.Module) -> torch.Tensor:
        if method == "saliency":
            return saliency(net, images, classes=targets).amax(dim=1)
        return cam(net, images, method=method, target_layer=layer_name, classes=targets)

    original = explain(copied)
    correlations = []
    for name in chosen:
        for part in modules[name].modules():
            _randomise(part, generator)
        correlations.append(spearman(original, explain(copied)))
    return SanityCheck(method, tuple(chosen), torch.stack(correlations))
