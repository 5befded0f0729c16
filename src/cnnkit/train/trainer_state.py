"""What a Trainer checkpoints and how: `TrainState` (where the run is) and `CheckpointedTraining`,
the Trainer's last.pt writer and reader (model, optimizer, scaler, EMA, progress, meter, RNG states).
Checkpoints are written at optimizer-step boundaries only: no partial gradient accumulation to save."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.train import checkpoint as ckpt
from cnnkit.train.config import TrainConfig
from cnnkit.train.distributed import DistributedContext
from cnnkit.train.ema import ModelEma
from cnnkit.train.metrics import ClassificationMeter


class TrainingDiverged(CnnkitError):
    """The loss became NaN or Inf; the last good checkpoint is left untouched."""


@dataclass
class TrainState:
    """Where the run is: saved in every checkpoint."""

    epoch: int = 0
    batch_in_epoch: int = 0  # loader batches done (micro-batches when accumulating)
    step: int = 0  # optimizer steps done
    best_metric: float | None = None
    best_epoch: int | None = None
    monitor: str | None = None  # config.monitor, or train_loss when there is no validation set
    epochs_without_improvement: int = 0
    skipped_batches: int = 0  # optimizer steps skipped on a non-finite loss (nan_policy skip)
    history: list[dict[str, float]] = field(default_factory=list)


class CheckpointedTraining:
    """The Trainer's checkpoint half (a base class of `cnnkit.train.trainer.Trainer`, which sets
    the attributes below)."""

    config: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: ModelEma | None
    state: TrainState
    meter: ClassificationMeter
    dist: DistributedContext
    run_dir: Path
    run_record: str | None
    current_lr: float
    epoch_metrics: dict[str, float]
    new_meter: Callable[[], ClassificationMeter]
    _resumed_meter: ClassificationMeter | None = None

    def _check_finite_weights(self) -> None:
        """A finite loss with an overflowing gradient leaves Inf/NaN weights: stop before they
        overwrite the last good checkpoint (or best.safetensors). One host sync per checkpoint."""
        tensors = [p.detach() for p in self.model.parameters()]
        if self.ema is not None:
            tensors += list(self.ema.module.parameters())
        if not bool(torch.stack([t.isfinite().all() for t in tensors]).all()):
            raise TrainingDiverged(
                f"the weights are not finite after step {self.state.step} (epoch {self.state.epoch + 1}), learning "
                f"rate {self.current_lr:.3g}: a gradient overflowed; stopped. The last good checkpoint in "
                f"{self.run_dir} is intact (lower the learning rate or add gradient clipping)")

    def save_state(self) -> None:
        """Atomically write `last.pt`: model, optimizer, scaler, EMA, progress and RNG states; never
        weights made non-finite (`_check_finite_weights`)."""
        self._check_finite_weights()
        self._write_state()

    def _write_state(self) -> None:
        # Mid-epoch: the training meter of all ranks so far (a collective: every rank saves at the
        # same steps); rank 0 resumes with the sum, the others from zero.
        meter = self.meter.merge_counts() if self.state.batch_in_epoch else None
        if meter is not None and self.dist.enabled:
            meter = self.dist.all_reduce_sum(meter)
        if not self.dist.is_main:
            return
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "trainer": asdict(self.state),
            "meter": meter,
            "rng": ckpt.capture_rng_state(),
            "requires_grad": [name for name, p in self.model.named_parameters() if p.requires_grad],
            "run": self.run_record,
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        ckpt.save_checkpoint(state, self.run_dir / "last.pt")

    def load_state(self, path: str | Path) -> None:
        """Restore everything `save_state` wrote; a checkpoint of another model or run setup is a
        CnnkitError naming the file."""
        state = ckpt.load_checkpoint(path)
        ckpt.check_same_run(state.get("run"), self.run_record, path)
        try:
            trainable = set(state["requires_grad"])
            for name, param in self.model.named_parameters():
                param.requires_grad_(name in trainable)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            self.state = TrainState(**state["trainer"])
            # the last finished epoch's metrics: what fit returns when nothing is left to train
            self.epoch_metrics = {k: v for k, v in (self.state.history or [{}])[-1].items() if k != "epoch"}
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise CnnkitError(f"cannot resume from {path}: it does not fit this model and config ({error})") from None
        if self.state.batch_in_epoch % self.config.accumulate_steps:
            raise CnnkitError(f"cannot resume from {path}: saved after batch {self.state.batch_in_epoch} of an epoch, "
                              f"inside an optimizer step of accumulate_steps {self.config.accumulate_steps}: resume "
                              f"with the run's own accumulate_steps")
        if state["meter"] is not None and self.dist.is_main:
            self._resumed_meter = self.new_meter()
            self._resumed_meter.load_counts(state["meter"])
        ckpt.restore_rng_state(state["rng"])
