"""`fit`: one training run into a run directory with a documented layout.

    RUN/config.yaml        the TrainConfig used
    RUN/split.json         the data split (written by the caller that made it)
    RUN/metrics.csv        one row per epoch: train_/val_ loss, top1, top5, lr
    RUN/best.safetensors   weights of the best epoch by config.monitor (EMA weights when enabled)
    RUN/last.pt            model, optimizer, scaler, EMA, progress and RNG states (for --resume)
    RUN/tensorboard/       TensorBoard event files
    RUN/summary.json       final train/val/test metrics, class names, model name, default_cfg
                           (a `RunSummary`, cnnkit/train/run_summary.py)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset

from cnnkit.data.augment_config import AugmentStep
from cnnkit.data.epoch_sampling import SampleTransform
from cnnkit.data.loader import BatchTransform
from cnnkit.errors import CnnkitError
from cnnkit.models.base import DefaultCfg
from cnnkit.models.heads import HeadSpec
from cnnkit.train.callbacks import Callback, CsvLogger, PhaseLabel, ProgressBar, TensorBoardLogger
from cnnkit.train.checkpoint import remove_stale_temporaries
from cnnkit.train.config import TrainConfig, load_config, save_config
from cnnkit.train.distributed import DistributedContext
from cnnkit.train.optim import ScheduleSpan
from cnnkit.train.run_summary import RunSummary, write_summary
from cnnkit.train.trainer import Trainer


@dataclass(frozen=True)
class RunInfo:
    """What a later `cnnkit predict` needs to rebuild the model and preprocess a new image."""

    model_name: str
    class_names: Sequence[str]
    default_cfg: DefaultCfg = field(default_factory=DefaultCfg)
    model_options: dict[str, Any] = field(default_factory=dict)
    head: HeadSpec | None = None  # the head that replaced the model's own (`--head`), if any

    @classmethod
    def for_model(cls, model_name: str, model: nn.Module, class_names: Sequence[str],
                  options: dict[str, Any] | None = None, *, head: HeadSpec | None = None) -> RunInfo:
        """The run's record of `model` as built (its default_cfg fitted to the data)."""
        return cls(model_name=model_name, class_names=list(class_names), default_cfg=model.default_cfg,
                   model_options=dict(options or {}), head=head)


@dataclass(frozen=True)
class DataBundle:
    """Datasets of (image, label) and the transforms that go with them."""

    train: Dataset
    val: Dataset | None = None
    test: Dataset | None = None
    train_transform: SampleTransform | None = None
    eval_transform: SampleTransform | None = None
    batch_transform: BatchTransform | None = None
    eval_batch_transform: BatchTransform | None = None
    augment: tuple[AugmentStep, ...] = ()  # the steps train_transform runs (kept in the run record)


# Settings a resume may set anew: those that do not change what a run computes, and `epochs`
# (training a run on for longer; said on the 'cnnkit' logger, as the schedule then spans more).
_RESUME_MAY_CHANGE = ("num_workers", "device", "checkpoint_every_steps", "epochs")


def check_resume_config(config: TrainConfig, run_dir: Path) -> TrainConfig | None:
    """A resume continues the run as it was configured (RUN/config.yaml, returned; None when there
    is none): another value of any setting but `_RESUME_MAY_CHANGE` is an error naming it (the run
    would silently not be the one it continues, and its config.yaml would be overwritten)."""
    path = run_dir / "config.yaml"
    if not path.exists():
        return None
    saved = load_config(path)
    changed = [f"{name} {getattr(saved, name)!r} (now {getattr(config, name)!r})"
               for name in saved.to_dict() if name not in _RESUME_MAY_CHANGE
               and getattr(saved, name) != getattr(config, name)]
    if changed:
        raise CnnkitError(f"--resume: {run_dir} was trained with {', '.join(changed)}; pass the run's own "
                          f"settings (see {path}) to continue it, or train a new run with --out")
    return saved


def fit(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    info: RunInfo,
    *,
    run_dir: str | Path,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    param_groups: Sequence[dict] | None = None,
    distributed: DistributedContext | None = None,
    quiet: bool = False,
    trainer_class: Callable[..., Trainer] = Trainer,
    phase: PhaseLabel | None = None,
    schedule_span: ScheduleSpan | None = None,
) -> RunSummary:
    """Train `model`, write the run directory, and return the summary (also in summary.json).

    `trainer_class` builds the trainer from Trainer's arguments (a subclass with another loss or
    evaluation: embeddings in cnnkit.embeddings, distillation in cnnkit.deploy); `phase` names the
    fine-tuning phase this run is, in the progress output; `schedule_span` places its LR schedule
    in one spanning several phases."""
    run_dir = Path(run_dir)
    dist = distributed or DistributedContext()
    last = run_dir / "last.pt"
    if resume and not last.exists():
        raise CnnkitError(f"--resume: no checkpoint to resume from at {last}")
    if not resume and last.exists():
        raise CnnkitError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
    if resume:
        saved = check_resume_config(config, run_dir)
        if saved is not None and saved.epochs != config.epochs:
            logging.getLogger("cnnkit").info("resume: %d epochs in all, not the run's %d (its LR schedule spans "
                                             "the new number from here on)", config.epochs, saved.epochs)
        if dist.is_main:
            remove_stale_temporaries(run_dir)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    all_callbacks = list(callbacks)
    if dist.is_main:
        all_callbacks += [CsvLogger(run_dir / "metrics.csv"), TensorBoardLogger(run_dir / "tensorboard")]
        if not quiet:
            all_callbacks.append(ProgressBar(phase=phase))
    trainer = trainer_class(
        model, data.train, config, num_classes=len(info.class_names), run_dir=run_dir, val_data=data.val,
        sample_transform=data.train_transform, eval_transform=data.eval_transform,
        batch_transform=data.batch_transform, eval_batch_transform=data.eval_batch_transform,
        param_groups=param_groups, callbacks=all_callbacks, distributed=dist, schedule_span=schedule_span,
        run_record=json.dumps({**dataclasses.asdict(info), "augment": [dataclasses.asdict(step) for step in data.augment]},
                              sort_keys=True, default=str),
    )
    start = time.perf_counter()
    final = trainer.fit(resume_from=last if resume else None)
    dist.barrier()
    test: dict[str, Any] = {}
    if data.test is not None and trainer.state.best_epoch is not None:  # None: stopped within the first epoch
        # The best epoch's weights are tested, then the trained ones put back: `model` leaves fit as
        # trained (a next fine-tuning phase starts from them, as it does when resumed from last.pt).
        trained = {k: v.detach().clone() for k, v in trainer.eval_model.state_dict().items()}
        trainer.eval_model.load_state_dict(load_file(run_dir / "best.safetensors"))
        test = {"test": trainer.evaluate_dataset(data.test, data.eval_transform, prefix="test_"),
                "test_per_class": trainer.last_eval_meter.per_class_accuracy(),
                "test_confusion": trainer.last_eval_meter.confusion.tolist()}
        trainer.eval_model.load_state_dict(trained)
    summary = RunSummary(
        model_name=info.model_name, class_names=tuple(info.class_names), default_cfg=info.default_cfg,
        model_options=dict(info.model_options), head=info.head,
        epochs_run=trainer.state.epoch,
        best_epoch=trainer.state.best_epoch, best_metric=trainer.state.best_metric,
        monitor=trainer.state.monitor, final=final, train_seconds=time.perf_counter() - start,
        effective_batch_size=trainer.effective_batch_size, **test,
    )
    if dist.is_main:
        write_summary(run_dir, summary)
    return summary
