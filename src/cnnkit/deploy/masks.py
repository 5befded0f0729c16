"""Global magnitude pruning masks for conv and linear weights, and a callback that holds them in training.

Han et al. 2015 / Frankle & Carbin 2019: one threshold over all prunable weights at once (so
layers end with different sparsities), survivors chosen among the weights still alive, so a
mask only ever loses entries. A mask is a bool tensor shaped like its weight (True = kept).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.train.callbacks import Callback

Masks = dict[str, torch.Tensor]


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """`name.weight` -> parameter of every Conv2d and Linear, in module order."""
    return {f"{name}.weight": module.weight for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear))}


def full_masks(model: nn.Module) -> Masks:
    """All-True masks (nothing pruned yet)."""
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in prunable_weights(model).items()}


@torch.no_grad()
def global_magnitude_masks(model: nn.Module, density: float, previous: Mapping[str, torch.Tensor] | None = None) -> Masks:
    """Masks keeping round(density * total) prunable weights: the largest |w| among those alive in
    `previous` (all when None). density is the fraction of ALL prunable weights kept."""
    if not 0.0 < density <= 1.0:
        raise CnnkitError(f"density must be in (0, 1], got {density} (sparsity must be in [0, 1))")
    weights = prunable_weights(model)
    if not weights:
        raise CnnkitError(f"{type(model).__name__} has no Conv2d or Linear weights to prune")
    alive = previous or full_masks(model)
    total = sum(w.numel() for w in weights.values())
    keep = int(round(density * total))
    scores = torch.cat([torch.where(alive[n].to(w.device), w.detach().abs(), torch.tensor(-1.0, device=w.device))
                        .flatten().float().cpu() for n, w in weights.items()])
    alive_count = int(sum(int(m.sum()) for m in alive.values()))
    if keep > alive_count:
        raise CnnkitError(f"cannot keep {keep} weights: only {alive_count} are still unpruned")
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[torch.topk(scores, keep, sorted=False).indices] = True
    masks, offset = {}, 0
    for name, w in weights.items():
        masks[name] = chosen[offset:offset + w.numel()].reshape(w.shape).to(w.device)
        offset += w.numel()
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned entries of each masked weight in place."""
    for name, mask in masks.items():
        weight = model.get_parameter(name)
        weight.mul_(mask.to(weight.device, weight.dtype))


@dataclass(frozen=True)
class SparsityReport:
    """Fraction of exact zeros per weight name (`layers`) and over all `prunable_weights` of them."""

    layers: dict[str, float]
    global_sparsity: float
    prunable_weights: int


def sparsity_report(state: Mapping[str, torch.Tensor], names: list[str]) -> SparsityReport:
    """Fraction of exact zeros per weight in `names` and over all of them (from a state dict)."""
    layers = {name: float((state[name] == 0).sum()) / state[name].numel() for name in names}
    total = sum(state[name].numel() for name in names)
    zeros = sum(layers[name] * state[name].numel() for name in names)
    return SparsityReport(layers, zeros / total, total)


def density(masks: Mapping[str, torch.Tensor]) -> float:
    """Kept fraction over all masked weights."""
    return sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


def rounds_density(rate: float, rounds: int) -> float:
    """Density after `rounds` rounds that each prune `rate` of the remaining weights: (1 - rate)^rounds."""
    return math.pow(1.0 - rate, rounds)


class MaskHold(Callback):
    """Keeps pruned weights at zero through training: gradients masked by a hook (so momentum and
    Adam moments of pruned entries stay zero) and the masks re-applied after every optimizer step."""

    def __init__(self, masks: Mapping[str, torch.Tensor]) -> None:
        self.masks = dict(masks)
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def before_fit(self, trainer) -> None:
        model = trainer.model
        apply_masks(model, self.masks)
        for name, mask in self.masks.items():
            weight = model.get_parameter(name)
            kept = mask.to(weight.device, weight.dtype)
            self.handles.append(weight.register_hook(lambda grad, kept=kept: grad * kept))
        if trainer.ema is not None:
            apply_masks(trainer.ema.module, self.masks)

    def after_batch(self, trainer) -> None:
        apply_masks(trainer.model, self.masks)
        if trainer.ema is not None:
            apply_masks(trainer.ema.module, self.masks)

    def after_fit(self, trainer) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
