"""Events of a training run, and the callbacks that log or steer it (fastai-style: no subclassing
of the trainer).

The trainer calls `callback.<event>(trainer)` for each event in `EVENTS`, in callback order. What
a callback may read is `TrainerView`; what it may change is `trainer.should_stop` (stop after the
current step) and the optimizer's learning rate in `before_batch` (the LR finder does).
`before_batch` / `after_batch` come once per optimizer step: around all its micro-batches when
config.accumulate_steps > 1 (`last_loss` is then their mean, `batch_size_seen` their images).
"""

from __future__ import annotations

import csv
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from cnnkit.train.checkpoint import atomic_write
from cnnkit.train.progress import LINE_INTERVAL_S, format_eta
from cnnkit.train.report import format_metrics_line

EVENTS = ("before_fit", "before_epoch", "before_batch", "after_batch", "after_epoch", "after_fit")


class TrainerView(Protocol):
    """The part of the Trainer that callbacks read (and `should_stop`, which they may set)."""

    config: Any  # TrainConfig
    state: Any  # TrainState: epoch, batch_in_epoch, step, best_metric, epochs_without_improvement, ...
    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch_metrics: dict[str, float]
    current_lr: float
    last_loss: float
    batch_size_seen: int
    should_stop: bool

    @property
    def steps_per_epoch(self) -> int: ...  # optimizer steps

    @property
    def step_in_epoch(self) -> int: ...

    @property
    def effective_batch_size(self) -> int: ...  # images per optimizer step, all processes


class Callback:
    """Override any of the event methods; each receives the trainer (read its `state`, `metrics`)."""

    def before_fit(self, trainer: TrainerView) -> None: ...
    def before_epoch(self, trainer: TrainerView) -> None: ...
    def before_batch(self, trainer: TrainerView) -> None: ...
    def after_batch(self, trainer: TrainerView) -> None: ...
    def after_epoch(self, trainer: TrainerView) -> None: ...
    def after_fit(self, trainer: TrainerView) -> None: ...


class EarlyStopping(Callback):
    """Stop once `patience` epochs in a row did not improve the monitored metric (added by the
    Trainer when config.early_stopping_patience is set; the count lives in the checkpointed state)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def _check(self, trainer: TrainerView) -> None:
        if trainer.state.epochs_without_improvement >= self.patience:
            trainer.should_stop = True

    before_fit = _check  # a resumed run that had already stopped stays stopped
    after_epoch = _check


class CsvLogger(Callback):
    """One row per epoch in `metrics.csv`; on resume, rows of epochs being redone are dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def before_fit(self, trainer: TrainerView) -> None:
        if not self.path.exists():
            return
        with self.path.open(newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) < trainer.state.epoch]
        self._write(rows)

    def after_epoch(self, trainer: TrainerView) -> None:
        rows = []
        if self.path.exists():
            with self.path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        rows.append({"epoch": trainer.state.epoch, **{k: f"{v:.6g}" for k, v in trainer.epoch_metrics.items()}})
        self._write(rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite the file atomically: a kill while it is rewritten keeps the earlier epochs' rows."""
        fields: list[str] = []
        for row in rows:
            fields += [k for k in row if k not in fields]
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path, lambda f: f.write(text.getvalue().encode()))


class TensorBoardLogger(Callback):
    """Scalars per epoch (and the learning rate per step) under `<run>/tensorboard`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.writer = None

    def before_fit(self, trainer: TrainerView) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=trainer.state.step)

    def after_batch(self, trainer: TrainerView) -> None:
        self.writer.add_scalar("lr", trainer.current_lr, trainer.state.step)

    def after_epoch(self, trainer: TrainerView) -> None:
        for name, value in trainer.epoch_metrics.items():
            self.writer.add_scalar(name, value, trainer.state.epoch)
        self.writer.flush()

    def after_fit(self, trainer: TrainerView) -> None:
        self.writer.close()


@dataclass(frozen=True)
class PhaseLabel:
    """Which fine-tuning phase a run is: `phase 2/3 (layer3+layer4)`."""

    index: int
    count: int
    name: str

    def __str__(self) -> str:
        return f"phase {self.index}/{self.count} ({self.name})"


class ProgressBar(Callback):
    """A bar per epoch with throughput and ETA on a terminal; otherwise a line at least every
    `interval_s` seconds (step, images/s, ETA) and a summary line per epoch. Lines start with
    the `phase` when the run is one phase of a fine-tuning (`phase 2/3 (layer4) epoch 4/10`)."""

    def __init__(self, *, stream=None, interval_s: float = LINE_INTERVAL_S, phase: PhaseLabel | None = None) -> None:
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self.interval_s = interval_s
        self.phase = phase
        self.progress = None
        self.task = None

    def _epoch(self, trainer: TrainerView) -> str:
        epoch = f"epoch {trainer.state.epoch + 1}/{trainer.config.epochs}"
        return epoch if self.phase is None else f"{self.phase} {epoch}"

    def before_fit(self, trainer: TrainerView) -> None:
        batch, steps = trainer.config.batch_size, trainer.config.accumulate_steps
        if trainer.effective_batch_size != batch:  # accumulating, or several processes
            processes = trainer.effective_batch_size // (batch * steps)
            print(f"effective batch {trainer.effective_batch_size} per optimizer step: --batch-size {batch} x "
                  f"--accumulate-steps {steps} x {processes} process{'es' if processes > 1 else ''}",
                  file=self.stream, flush=True)

    def before_epoch(self, trainer: TrainerView) -> None:
        self.start = self.last_line = time.perf_counter()
        self.images, self.steps = 0, 0
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn(self._epoch(trainer)),
                BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=trainer.steps_per_epoch, info="",
                                               completed=trainer.step_in_epoch)

    def after_batch(self, trainer: TrainerView) -> None:
        self.images += trainer.batch_size_seen
        self.steps += 1
        now = time.perf_counter()
        rate = self.images / max(1e-9, now - self.start)
        if self.progress is not None:
            self.progress.update(self.task, advance=1, info=f"loss {trainer.last_loss:.4f}  {rate:.0f} img/s")
        elif now - self.last_line >= self.interval_s:
            self.last_line = now
            done = trainer.step_in_epoch
            left = (trainer.steps_per_epoch - done) * (now - self.start) / self.steps
            print(f"{self._epoch(trainer)}  step {done}/{trainer.steps_per_epoch}  "
                  f"loss {trainer.last_loss:.4f}  {rate:.1f} img/s  ETA {format_eta(left)}",
                  file=self.stream, flush=True)

    def after_epoch(self, trainer: TrainerView) -> None:
        if self.progress is not None:
            self.progress.stop()
        elapsed = time.perf_counter() - self.start
        shown = format_metrics_line(trainer.epoch_metrics)
        print(f"{self._epoch(trainer)}  {shown}  "
              f"({self.images / max(elapsed, 1e-9):.0f} img/s, {elapsed:.1f}s)", file=self.stream, flush=True)
