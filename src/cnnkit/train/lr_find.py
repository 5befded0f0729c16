"""The learning-rate range test (Smith 2017): raise the LR exponentially over a few hundred steps,
record the smoothed loss, and suggest the LR where the loss falls fastest."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from cnnkit.data.epoch_sampling import SampleTransform
from cnnkit.data.loader import BatchTransform, make_loader
from cnnkit.errors import CnnkitError
from cnnkit.train.config import TrainConfig
from cnnkit.train.optim import build_optimizer, parameter_groups, set_learning_rate
from cnnkit.train.trainer import pick_device


@dataclass(frozen=True)
class LrFindResult:
    lrs: list[float]
    losses: list[float]  # exponentially smoothed, bias-corrected
    suggestion: float


def lr_find(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    *,
    sample_transform: SampleTransform | None = None,
    batch_transform: BatchTransform | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    smoothing: float = 0.98,
) -> LrFindResult:
    """Sweep on a copy of `model` (the original is untouched); stops early once the loss diverges."""
    if not 0 < start_lr < end_lr:
        raise CnnkitError(f"lr-find: need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    device = pick_device(config.device)
    work = copy.deepcopy(model).to(device).train()
    optimizer = build_optimizer(parameter_groups(work, config.weight_decay), config)
    loader = make_loader(dataset, batch_size=config.batch_size, train=True, seed=config.seed,
                         num_workers=config.num_workers, device=device, sample_transform=sample_transform,
                         batch_transform=batch_transform)
    ratio = (end_lr / start_lr) ** (1 / max(1, num_steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    average, best = 0.0, math.inf
    step, epoch = 0, 0
    while step < num_steps:
        loader.set_epoch(epoch)
        for images, targets, soft in loader.labelled_batches():
            lr = start_lr * ratio**step
            set_learning_rate(optimizer, lr, 1.0)
            loss = F.cross_entropy(work(images), soft if soft is not None else targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            average = smoothing * average + (1 - smoothing) * value
            smoothed = average / (1 - smoothing ** (step + 1))
            step += 1
            if not math.isfinite(smoothed) or smoothed > 4 * best:
                return _result(lrs, losses)
            best = min(best, smoothed)
            lrs.append(lr)
            losses.append(smoothed)
            if step >= num_steps:
                break
        epoch += 1
    return _result(lrs, losses)


def _result(lrs: list[float], losses: list[float]) -> LrFindResult:
    if len(lrs) < 3:
        raise CnnkitError("lr-find: the loss diverged within the first steps; lower --start-lr")
    return LrFindResult(lrs, losses, suggest_lr(lrs, losses))


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The LR of the steepest descent of loss against log(LR), ignoring the noisy ends."""
    log_lrs = torch.tensor(lrs).log()
    values = torch.tensor(losses)
    slopes = (values[2:] - values[:-2]) / (log_lrs[2:] - log_lrs[:-2])
    return float(lrs[1 + int(slopes.argmin())])


def plot_lr_find(result: LrFindResult, path: str | Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    axis.plot(result.lrs, result.losses)
    axis.axvline(result.suggestion, color="tab:red", linestyle="--", label=f"suggested {result.suggestion:.2e}")
    axis.set(xscale="log", xlabel="learning rate", ylabel="loss (smoothed)", title="LR range test")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
