"""The training loop: a small `Trainer` that emits events to callbacks and checkpoints its whole state.

A run directory holds `config.yaml`, `metrics.csv`, `best.safetensors` (weights of the best
epoch by `config.monitor`), `last.pt` (everything a resume needs), `tensorboard/` and
`summary.json` (see `cnnkit.train.fit`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cnnkit.data.epoch_sampling import SampleTransform, dataset_targets
from cnnkit.data.loader import BatchTransform, DeviceLoader, make_loader
from cnnkit.data.sampling import class_weights
from cnnkit.errors import CnnkitError
from cnnkit.models.base import require_classifier
from cnnkit.train import checkpoint as ckpt
from cnnkit.train.accumulation import StepGroups
from cnnkit.train.callbacks import EVENTS, Callback, EarlyStopping
from cnnkit.train.config import TrainConfig
from cnnkit.train.determinism import deterministic_algorithms
from cnnkit.train.distributed import DistributedContext, checked_device
from cnnkit.train.ema import ModelEma
from cnnkit.train.evaluate import evaluate_model
from cnnkit.train.frozen_norms import frozen_batch_norms
from cnnkit.train.metrics import ClassificationMeter
from cnnkit.train.optim import (ScheduleSpan, build_optimizer, lr_factor, onecycle_momentum, parameter_groups,
                                set_learning_rate, set_momentum)
from cnnkit.train.precision import resolve_precision
from cnnkit.train.trainer_state import CheckpointedTraining, TrainingDiverged, TrainState


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when available, else CPU; `requested` overrides ("cpu", "cuda:1", ...)."""
    if requested:
        return checked_device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Trainer(CheckpointedTraining):
    """Fits `model` on `train_data` (a dataset of (image, label)); see `fit` for the loop.

    Data comes through `cnnkit.data.loader.make_loader`: `sample_transform` per item in the
    workers, `batch_transform` per batch on the device (both seeded from config.seed, the epoch
    and the position), so a resume from a mid-epoch checkpoint replays the exact same batches.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Dataset,
        config: TrainConfig,
        *,
        num_classes: int,
        run_dir: str | Path,
        val_data: Dataset | None = None,
        sample_transform: SampleTransform | None = None,
        eval_transform: SampleTransform | None = None,
        batch_transform: BatchTransform | None = None,
        eval_batch_transform: BatchTransform | None = None,
        param_groups: Sequence[dict] | None = None,
        callbacks: Sequence[Callback] = (),
        distributed: DistributedContext | None = None,
        schedule_span: ScheduleSpan | None = None,
        run_record: str | None = None,
    ) -> None:
        config.check_trainable()
        require_classifier(model, "training")
        self.config, self.num_classes = config, num_classes
        self.schedule_span = schedule_span  # None: the LR schedule spans this run's epochs
        self.run_record = run_record  # JSON of what the run is of (fit's RunInfo): kept in last.pt
        self.run_dir = Path(run_dir)
        self.dist = distributed or DistributedContext()
        self.device = pick_device(config.device) if not self.dist.enabled else self.dist.device
        self.model = model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.eval_batch_transform = eval_batch_transform
        self.callbacks = list(callbacks)
        if config.early_stopping_patience is not None:
            self.callbacks.append(EarlyStopping(config.early_stopping_patience))
        # Any callback may set this; the loop stops after the current step (see `_train_epoch`).
        self.should_stop = False
        self.state = TrainState()
        self.train_loader = self._loader(train_data, sample_transform, batch_transform, train=True)
        self.val_loader = None if val_data is None else self._loader(val_data, eval_transform, eval_batch_transform,
                                                                     train=False)
        # Per-class loss weights N / (K * n_k) of the training labels (see cnnkit.data.sampling).
        self.class_weight = (class_weights(dataset_targets(train_data), num_classes).to(self.device)
                             if config.class_weighted_loss else None)
        groups = param_groups if param_groups is not None else parameter_groups(self.model, config.weight_decay)
        self.optimizer = build_optimizer(groups, config)
        self.precision = resolve_precision(config.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.ema = ModelEma(self.model, config.ema_decay) if config.ema_decay else None
        self.forward_model = self.dist.wrap(self.model)
        if config.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.epoch_metrics: dict[str, float] = {}
        self.current_lr, self.last_loss, self.batch_size_seen = config.lr, math.nan, 0

    # ----------------------------------------------------------------- data
    def _loader(self, dataset: Dataset, sample_transform: SampleTransform | None,
                batch_transform: BatchTransform | None, *, train: bool) -> DeviceLoader:
        """This rank's batches of `dataset` on the trainer's device (training: shuffled or balanced)."""
        config = self.config
        return make_loader(
            dataset, batch_size=config.batch_size, train=train, seed=config.seed, num_workers=config.num_workers,
            device=self.device, sample_transform=sample_transform, batch_transform=batch_transform,
            rank=self.dist.rank, world_size=self.dist.world_size, balanced=train and config.balanced_sampling,
            channels_last=config.channels_last,
        )

    @property
    def step_groups(self) -> StepGroups:
        """How the epoch's loader batches group into optimizer steps (config.accumulate_steps each)."""
        return StepGroups(self.config.accumulate_steps, self.train_loader.batches_per_epoch)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: what the LR schedule, warm-up and progress count."""
        return self.step_groups.steps_per_epoch

    @property
    def step_in_epoch(self) -> int:
        return self.step_groups.steps_done(self.state.batch_in_epoch)

    @property
    def effective_batch_size(self) -> int:
        """Images per optimizer step: batch_size x accumulate_steps x processes."""
        return self.config.batch_size * self.config.accumulate_steps * self.dist.world_size

    # ----------------------------------------------------------------- events
    def _emit(self, event: str) -> None:
        assert event in EVENTS
        for callback in self.callbacks:
            getattr(callback, event)(self)

    # ----------------------------------------------------------------- loop
    def fit(self, *, resume_from: str | Path | None = None) -> dict[str, float]:
        """Train for `config.epochs`, validating after each; returns the last epoch's metrics."""
        if resume_from is not None:
            self.load_state(resume_from)
        with deterministic_algorithms(self.config.deterministic):
            if resume_from is None:
                torch.manual_seed(self.config.seed)
            self._emit("before_fit")
            while self.state.epoch < self.config.epochs and not self.should_stop:
                if self._train_epoch():
                    self._end_epoch()
            self._emit("after_fit")
        return self.epoch_metrics

    def _train_epoch(self) -> bool:
        """One epoch's steps; False when a callback set `should_stop` before the epoch ended (the
        epoch is then neither evaluated nor checkpointed: the last checkpoint stays the resume point)."""
        self.train_loader.set_epoch(self.state.epoch, skip=self.state.batch_in_epoch)
        self.meter = self._resumed_meter or self.new_meter()
        self._resumed_meter = None
        self._set_train_mode()
        self._emit("before_epoch")
        if self.should_stop:  # before the epoch's first step
            return False
        span = self.schedule_span or ScheduleSpan(0, self.config.epochs)
        total_steps, offset = span.total_epochs * self.steps_per_epoch, span.epochs_before * self.steps_per_epoch
        groups, batches = self.step_groups, self.train_loader.batches_per_epoch
        for images, targets, soft_targets in self.train_loader.labelled_batches():
            batch = self.state.batch_in_epoch
            if groups.starts_step(batch):
                self._start_step(offset + self.state.step, total_steps)
            self._forward_backward(images, targets, soft_targets, micro_batches=groups.micro_batches(batch),
                                   sync=groups.ends_step(batch))
            self.state.batch_in_epoch += 1
            if not groups.ends_step(batch):
                continue
            self._optimizer_step()
            self.state.step += 1
            self._emit("after_batch")
            # Checkpoints and stops only at optimizer-step boundaries: no partial accumulation to save.
            if self.should_stop and self.state.batch_in_epoch < batches:
                return False
            every = self.config.checkpoint_every_steps
            if every and self.state.step % every == 0 and self.state.batch_in_epoch < batches:
                self.save_state()
        return True

    def _start_step(self, step: int, total_steps: int) -> None:
        """The schedule's LR (and onecycle momentum) for optimizer step `step`, then `before_batch`."""
        factor = lr_factor(self.config, step, total_steps, self.steps_per_epoch)
        self.current_lr = self.config.lr * factor
        set_learning_rate(self.optimizer, self.config.lr, self.current_lr / self.config.lr)
        if (momentum := onecycle_momentum(self.config, step, total_steps)) is not None:
            set_momentum(self.optimizer, momentum)
        self._emit("before_batch")
        self.optimizer.zero_grad(set_to_none=True)
        self._step_losses: list[float] = []
        self._step_images, self._step_skipped = 0, False

    def _forward_backward(self, images: torch.Tensor, targets: torch.Tensor, soft_targets: torch.Tensor | None,
                          *, micro_batches: int, sync: bool) -> None:
        """Forward and backward of one (micro-)batch: labels (N,) for the meter, soft (N, K) after
        mixing. Its loss, divided by the step's `micro_batches`, adds into the gradients (their mean
        over the step's images); under DDP they are all-reduced only when `sync` (the step's last).
        After a non-finite loss with nan_policy skip, the step's remaining micro-batches are not run."""
        if self._step_skipped:
            return
        with self.dist.gradient_sync(self.forward_model, sync=sync):
            with self._autocast():
                logits = self.forward_model(images)
                loss = self.loss(logits, soft_targets if soft_targets is not None else targets)
            # The micro-batch's only host sync, right after the forward pass: the NaN check needs the
            # value before the optimizer step anyway, and reading it (and the logits, for the meter)
            # here, before backward is queued, lets an accelerator run backward + step while the host
            # fetches the next batch, instead of draining its queue for a later float(loss).
            # Under DDP every rank stops or skips together (a rank skipping its backward alone left
            # the others waiting in the gradient all-reduce).
            loss_value, non_finite = self.dist.value_and_any_non_finite(loss)
            if non_finite:
                self._on_non_finite(loss_value if not math.isfinite(loss_value) else "non-finite on another rank",
                                    micro_batches)
                return
            self.meter.update(logits, targets, loss_value)
            self.scaler.scale(loss if micro_batches == 1 else loss / micro_batches).backward()
        self._step_losses.append(loss_value)
        self._step_images += images.shape[0]

    def _optimizer_step(self) -> None:
        """Once per optimizer step, on the accumulated gradients: clipping (of their unscaled global
        norm), the (scaled) optimizer step, the scaler's update and the EMA."""
        if self._step_skipped:
            self.optimizer.zero_grad(set_to_none=True)
            self.batch_size_seen = 0
            return
        if self.config.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        self.last_loss = sum(self._step_losses) / len(self._step_losses)
        self.batch_size_seen = self._step_images

    def new_meter(self) -> ClassificationMeter:
        """The training meter of an epoch (a subclass may track only the loss: metric learning)."""
        return ClassificationMeter(self.num_classes)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training cross-entropy of logits (N, K) against labels (N,) or soft targets (N, K), with
        label smoothing and, when config.class_weighted_loss, the training set's class weights."""
        return F.cross_entropy(logits.float(), targets, weight=self.class_weight,
                               label_smoothing=self.config.label_smoothing)

    def _on_non_finite(self, loss: float | str, micro_batches: int) -> None:
        """nan_policy skip: the whole optimizer step is skipped (counted in skipped_batches); stop: raise."""
        within = (f", micro-batch {self.state.batch_in_epoch % self.config.accumulate_steps + 1}/{micro_batches} "
                  f"of the step" if self.config.accumulate_steps > 1 else "")
        where = (f"step {self.state.step} (epoch {self.state.epoch + 1}, batch {self.state.batch_in_epoch + 1}"
                 f"{within}), learning rate {self.current_lr:.3g}")
        if self.config.nan_policy == "skip":
            self.state.skipped_batches += 1
            self._step_skipped = True
            return
        raise TrainingDiverged(
            f"loss is {loss} at {where}; stopped. The last good checkpoint in {self.run_dir} is intact "
            f"(lower the learning rate, add gradient clipping, or set nan_policy: skip)"
        )

    def _end_epoch(self) -> None:
        metrics = self._reduced(self.meter).compute("train_")
        metrics["lr"] = self.current_lr
        if self.state.skipped_batches:
            metrics["skipped_batches"] = float(self.state.skipped_batches)
        if self.val_loader is not None:
            # Every rank evaluates (its share) with what rank 0 checkpoints (an EMA of each rank's
            # own BN statistics otherwise differs, and a resumed rank gets rank 0's).
            self.dist.broadcast_buffers(self.eval_model)
            metrics.update(self.evaluate(self.val_loader, prefix="val_"))
        self.epoch_metrics = metrics
        self.state.history.append({"epoch": float(self.state.epoch), **metrics})
        improved = self._track_best(metrics)
        self._emit("after_epoch")
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        self._check_finite_weights()  # before best.safetensors and last.pt
        if improved and self.dist.is_main:
            ckpt.save_weights(self.eval_model, self.run_dir / "best.safetensors")
        self._write_state()

    def _track_best(self, metrics: dict[str, float]) -> bool:
        """Whether this epoch is the best so far by config.monitor; train_loss (lower is better)
        stands in for a val_ metric only when there are no validation metrics at all."""
        wanted = self.config.monitor
        if wanted not in metrics and not (wanted.startswith("val_") and not any(k.startswith("val_") for k in metrics)):
            raise CnnkitError(f"monitor {wanted!r} is not a metric of this run; its metrics: {', '.join(metrics)}")
        monitor = wanted if wanted in metrics else "train_loss"
        mode = self.config.monitor_mode if monitor == self.config.monitor else "min"
        value = metrics[monitor]
        self.state.monitor = monitor
        best = self.state.best_metric
        improved = best is None or (value > best if mode == "max" else value < best)
        if improved:
            self.state.best_metric, self.state.best_epoch = value, self.state.epoch
            self.state.epochs_without_improvement = 0
        else:
            self.state.epochs_without_improvement += 1
        return improved

    # ----------------------------------------------------------------- evaluation
    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def evaluate(self, loader: DataLoader, *, prefix: str = "") -> dict[str, float]:
        """Loss and accuracy of the (EMA) model over `loader`, reduced across ranks."""
        meter = evaluate_model(self.eval_model, loader, num_classes=self.num_classes, device=self.device,
                               autocast=self._autocast)
        self.last_eval_meter = self._reduced(meter)
        return self.last_eval_meter.compute(prefix)

    def evaluate_dataset(self, dataset: Dataset, transform: SampleTransform | None, *, prefix: str) -> dict[str, float]:
        """`evaluate` over `dataset` in order, with `transform` per item and the eval batch stage."""
        loader = self._loader(dataset, transform, self.eval_batch_transform, train=False)
        return self.evaluate(loader, prefix=prefix)

    # ----------------------------------------------------------------- helpers
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _set_train_mode(self) -> None:
        """train() everywhere, except the BatchNorm layers of the frozen part, affine or not: their
        running statistics stay fixed too (fine-tuning a frozen backbone must not drift its BN stats)."""
        self.model.train()
        for module in frozen_batch_norms(self.model):
            module.eval()

    def _reduced(self, meter: ClassificationMeter) -> ClassificationMeter:
        if self.dist.enabled:
            meter.load_counts(self.dist.all_reduce_sum(meter.merge_counts()))
        return meter
