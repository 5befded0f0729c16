"""Events of a training run, and the callbacks that log them (fastai-style: no subclassing of the trainer).

The trainer calls `callback.<event>(trainer)` for each event in `EVENTS`, in callback order.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnkit.train.trainer import Trainer

EVENTS = ("before_fit", "before_epoch", "before_batch", "after_batch", "after_epoch", "after_fit")


class Callback:
    """Override any of the event methods; each receives the trainer (read its `state`, `metrics`)."""

    def before_fit(self, trainer: Trainer) -> None: ...
    def before_epoch(self, trainer: Trainer) -> None: ...
    def before_batch(self, trainer: Trainer) -> None: ...
    def after_batch(self, trainer: Trainer) -> None: ...
    def after_epoch(self, trainer: Trainer) -> None: ...
    def after_fit(self, trainer: Trainer) -> None: ...


class CsvLogger(Callback):
    """One row per epoch in `metrics.csv`; on resume, rows of epochs being redone are dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def before_fit(self, trainer: Trainer) -> None:
        if not self.path.exists():
            return
        with self.path.open(newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) < trainer.state.epoch]
        self._write(rows)

    def after_epoch(self, trainer: Trainer) -> None:
        rows = []
        if self.path.exists():
            with self.path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        rows.append({"epoch": trainer.state.epoch, **{k: f"{v:.6g}" for k, v in trainer.epoch_metrics.items()}})
        self._write(rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        fields: list[str] = []
        for row in rows:
            fields += [k for k in row if k not in fields]
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


class TensorBoardLogger(Callback):
    """Scalars per epoch (and the learning rate per step) under `<run>/tensorboard`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.writer = None

    def before_fit(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=trainer.state.step)

    def after_batch(self, trainer: Trainer) -> None:
        self.writer.add_scalar("lr", trainer.current_lr, trainer.state.step)

    def after_epoch(self, trainer: Trainer) -> None:
        for name, value in trainer.epoch_metrics.items():
            self.writer.add_scalar(name, value, trainer.state.epoch)
        self.writer.flush()

    def after_fit(self, trainer: Trainer) -> None:
        self.writer.close()


class ProgressBar(Callback):
    """A bar per epoch with throughput and ETA on a terminal; one summary line per epoch otherwise."""

    def __init__(self, *, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self.progress = None
        self.task = None

    def before_epoch(self, trainer: Trainer) -> None:
        self.start, self.images = time.perf_counter(), 0
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn(f"epoch {trainer.state.epoch + 1}/{trainer.config.epochs}"),
                BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=trainer.steps_per_epoch, info="",
                                               completed=trainer.state.batch_in_epoch)

    def after_batch(self, trainer: Trainer) -> None:
        self.images += trainer.batch_size_seen
        if self.progress is not None:
            rate = self.images / max(1e-9, time.perf_counter() - self.start)
            self.progress.update(self.task, advance=1, info=f"loss {trainer.last_loss:.4f}  {rate:.0f} img/s")

    def after_epoch(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.stop()
        elapsed = time.perf_counter() - self.start
        shown = "  ".join(f"{k} {_format(k, v)}" for k, v in trainer.epoch_metrics.items())
        print(f"epoch {trainer.state.epoch + 1}/{trainer.config.epochs}  {shown}  "
              f"({self.images / max(elapsed, 1e-9):.0f} img/s, {elapsed:.1f}s)", file=self.stream, flush=True)


def _format(name: str, value: float) -> str:
    return f"{100 * value:.2f}%" if "top" in name else f"{value:.4f}"
