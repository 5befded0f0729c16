"""Optimizers with weight decay only where it belongs, and per-step learning-rate schedules."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.train.config import TrainConfig

log = logging.getLogger("cnnkit")

# torch.optim.lr_scheduler.OneCycleLR's defaults: momentum (or Adam's beta1) goes 0.95 -> 0.85 while
# the LR warms up, then back to 0.95 while it anneals (Smith 2018, "A disciplined approach...", 1cycle).
ONECYCLE_MOMENTUM = (0.95, 0.85, 0.95)
ONECYCLE_LR = (1 / 25, 1.0, 1 / 25 / 1e4)  # of the base LR: div_factor 25, final_div_factor 1e4

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def no_decay_parameter_names(model: nn.Module) -> set[str]:
    """Biases, normalisation weights and 1-D parameters such as layer scale: decaying them
    towards zero only hurts (Goyal et al. 2017; the convention of timm and fastai)."""
    names: set[str] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if isinstance(module, _NORM_TYPES) or param.ndim <= 1:
                names.add(full)
    return names


def parameter_groups(
    model: nn.Module, weight_decay: float, lr_scale: dict[str, float] | None = None
) -> list[dict]:
    """Trainable parameters split into decay / no-decay groups, optionally with a per-parameter LR
    scale (layer-wise LR decay); each group carries `lr_scale`, applied by the schedule."""
    skip = no_decay_parameter_names(model)
    groups: dict[tuple[float, float], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = 0.0 if name in skip else weight_decay
        scale = 1.0 if lr_scale is None else lr_scale.get(name, 1.0)
        group = groups.setdefault((decay, scale), {"params": [], "weight_decay": decay, "lr_scale": scale})
        group["params"].append(param)
    return list(groups.values())


def build_optimizer(groups: Iterable[dict], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam (Kingma & Ba 2015; weight decay as an L2 term added to the
    gradient) or AdamW (Loshchilov & Hutter 2019; decay decoupled from the adaptive step); each
    group's `weight_decay` comes from `parameter_groups`."""
    groups = list(groups)
    if config.schedule == "onecycle" and not cycles_momentum(config):
        log.info("onecycle: SGD without momentum (momentum 0), so the momentum is not cycled (torch's "
                 "OneCycleLR would switch it on, cycling 0.95-0.85-0.95; give --momentum 0.9 for that)")
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)


@dataclass(frozen=True)
class ScheduleSpan:
    """Where a run sits in a longer schedule: fine-tuning phases sharing one schedule across all
    of them (`epochs_before` this phase, `total_epochs` of all phases)."""

    epochs_before: int
    total_epochs: int


def lr_factor(config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the base LR at optimizer step `step` (0-based), for the configured schedule.

    cosine: linear warm-up then half-cosine to 0 (Loshchilov & Hutter 2017); step: x gamma every
    `step_size_epochs`; onecycle: Smith & Topin 2019 with 30% warm-up from lr/25 and cosine
    annealing to lr/25/1e4, step for step the LRs of torch's OneCycleLR (its phase ends at
    steps 0.3 T - 1 and T - 1; `onecycle_momentum` gives the momentum that goes with it).
    """
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "onecycle":
        return _onecycle(ONECYCLE_LR, step, total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "cosine":
        progress = (step - warmup) / max(1, total_steps - warmup)
        return _cosine(1.0, 0.0, progress)
    if config.schedule == "step":
        return config.step_gamma ** (step // (config.step_size_epochs * steps_per_epoch))
    return 1.0


def cycles_momentum(config: TrainConfig) -> bool:
    """Whether the schedule cycles SGD momentum / Adam(W) beta1: onecycle does, but for SGD with
    momentum 0, kept plain SGD as asked (torch's OneCycleLR would switch momentum on)."""
    return config.schedule == "onecycle" and not (config.optimizer == "sgd" and config.momentum == 0)


def onecycle_momentum(config: TrainConfig, step: int, total_steps: int) -> float | None:
    """SGD momentum / Adam(W) beta1 at optimizer step `step` under onecycle, as torch's OneCycleLR
    (cycle_momentum=True, its defaults) sets it; None when nothing is cycled (`cycles_momentum`)."""
    if not cycles_momentum(config):
        return None
    return _onecycle(ONECYCLE_MOMENTUM, step, total_steps)


def _onecycle(values: tuple[float, float, float], step: int, total_steps: int) -> float:
    """Cosine from values[0] to values[1] over steps 0..0.3 T - 1, then to values[2] at step T - 1."""
    peak, last = float(0.3 * total_steps) - 1, total_steps - 1
    start, middle, end = values
    if step <= peak:
        return _cosine(start, middle, step / peak)
    return _cosine(middle, end, (step - peak) / (last - peak))


def _cosine(start: float, end: float, progress: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * min(1.0, progress))) / 2


def set_learning_rate(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = base_lr * factor * group.get("lr_scale", 1.0)


def set_momentum(optimizer: torch.optim.Optimizer, momentum: float) -> None:
    """Sets SGD's momentum, or Adam(W)'s beta1 (keeping beta2), in every parameter group."""
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum


def layerwise_lr_scale(model: nn.Module, decay: float, stage_prefixes: Sequence[str]) -> dict[str, float]:
    """LR scale per parameter name: the last stage gets 1, each earlier one `decay` times less
    (Howard & Ruder 2018, discriminative fine-tuning). Parameters in no listed stage belong to
    the earliest (stem) level."""
    depth = len(stage_prefixes)
    scales: dict[str, float] = {}
    for name, _ in model.named_parameters():
        level = 0
        for index, prefix in enumerate(stage_prefixes):
            if name == prefix or name.startswith(prefix + "."):
                level = index + 1
        scales[name] = decay ** (depth - level)
    return scales
