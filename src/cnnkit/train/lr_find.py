"""The learning-rate range test (Smith 2017): raise the LR exponentially over a few hundred steps,
record the smoothed loss, and suggest the LR where the loss falls fastest. A callback over the one
Trainer loop, not a loop of its own."""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from cnnkit.data.epoch_sampling import SampleTransform
from cnnkit.data.epoch_sampling import dataset_targets
from cnnkit.data.loader import BatchTransform
from cnnkit.errors import CnnkitError
from cnnkit.train.callbacks import Callback, TrainerView
from cnnkit.train.config import TrainConfig
from cnnkit.train.optim import set_learning_rate
from cnnkit.train.trainer import Trainer, TrainingDiverged


@dataclass(frozen=True)
class LrFindResult:
    lrs: list[float]
    losses: list[float]  # exponentially smoothed, bias-corrected
    suggestion: float


class LrFinder(Callback):
    """Overrides the schedule with an exponential LR sweep and records the smoothed loss; sets
    `should_stop` after `num_steps` or once the loss diverges (over 4x its best)."""

    def __init__(self, *, start_lr: float, end_lr: float, num_steps: int, smoothing: float) -> None:
        self.start_lr, self.num_steps, self.smoothing = start_lr, num_steps, smoothing
        self.ratio = (end_lr / start_lr) ** (1 / max(1, num_steps - 1))
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.average, self.best, self.step = 0.0, math.inf, 0

    def before_batch(self, trainer: TrainerView) -> None:
        self.lr = self.start_lr * self.ratio**self.step
        set_learning_rate(trainer.optimizer, self.lr, 1.0)

    def after_batch(self, trainer: TrainerView) -> None:
        self.average = self.smoothing * self.average + (1 - self.smoothing) * trainer.last_loss
        smoothed = self.average / (1 - self.smoothing ** (self.step + 1))
        self.step += 1
        if not math.isfinite(smoothed) or smoothed > 4 * self.best:
            trainer.should_stop = True
            return
        self.best = min(self.best, smoothed)
        self.lrs.append(self.lr)
        self.losses.append(smoothed)
        if self.step >= self.num_steps:
            trainer.should_stop = True


def lr_find(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    *,
    num_classes: int | None = None,
    sample_transform: SampleTransform | None = None,
    batch_transform: BatchTransform | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    smoothing: float = 0.98,
) -> LrFindResult:
    """Sweep on a copy of `model` (the original is untouched) through the Trainer's own loop, so
    precision, channels_last, label smoothing and class weights are those of the real run."""
    if not 0 < start_lr < end_lr:
        raise CnnkitError(f"lr-find: need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    finder = LrFinder(start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, smoothing=smoothing)
    classes = num_classes if num_classes is not None else max(dataset_targets(dataset)) + 1
    with tempfile.TemporaryDirectory(prefix="cnnkit-lr-find-") as scratch:
        probe = config.replace(epochs=1, early_stopping_patience=None, ema_decay=None, checkpoint_every_steps=None)
        trainer = Trainer(copy.deepcopy(model), dataset, probe, num_classes=classes, run_dir=scratch,
                          sample_transform=sample_transform, batch_transform=batch_transform, callbacks=[finder])
        epochs = -(-num_steps // trainer.steps_per_epoch)
        trainer.config = probe.replace(epochs=epochs, schedule="constant", warmup_epochs=0.0)
        try:
            trainer.fit()
        except TrainingDiverged:
            pass  # a NaN loss is where the sweep ends
    return _result(finder.lrs, finder.losses)


def _result(lrs: list[float], losses: list[float]) -> LrFindResult:
    if len(lrs) < 3:
        raise CnnkitError("lr-find: the loss diverged within the first steps; lower --start-lr")
    return LrFindResult(lrs, losses, suggest_lr(lrs, losses))


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The LR of the steepest descent of loss against log(LR) (central differences, so not at the
    ends), searched up to the loss's minimum: past it the loss rises, and a dip in that noise is
    no descent to train at (it suggested 0.42 on a sweep whose loss only rose)."""
    lowest = max(2, int(torch.tensor(losses).argmin()))
    log_lrs = torch.tensor(lrs[:lowest + 1]).log()
    values = torch.tensor(losses[:lowest + 1])
    slopes = (values[2:] - values[:-2]) / (log_lrs[2:] - log_lrs[:-2])
    return float(lrs[1 + int(slopes.argmin())])


def loss_fell(losses: list[float]) -> bool:
    """Whether the sweep's smoothed loss fell below its start by 1% at least (else no LR trained)."""
    return min(losses) < 0.99 * losses[0]


def check_plot_path(path: str | Path) -> Path:
    """`path` for `plot_lr_find`, its folder made: an unknown image format or a folder that cannot be
    made is a CnnkitError naming it before the sweep, not a traceback after it."""
    from matplotlib.figure import Figure

    path = Path(path)
    formats = Figure().canvas.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise CnnkitError(f"--plot {path}: the name must end in an image format matplotlib writes: "
                          f"{', '.join('.' + f for f in sorted(formats))}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CnnkitError(f"--plot {path}: cannot make its folder ({error})") from None
    return path


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
