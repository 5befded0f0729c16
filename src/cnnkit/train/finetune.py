"""Transfer learning in phases: train the new head on a frozen backbone, then everything with
layer-wise learning-rate decay (Howard & Ruder 2018, ULMFiT's gradual unfreezing)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.adapt import module_at
from cnnkit.models.heads import head_path_of
from cnnkit.train.callbacks import PhaseLabel
from cnnkit.train.checkpoint import atomic_copy, load_checkpoint, remove_stale_temporaries
from cnnkit.train.config import TrainConfig, save_config
from cnnkit.train.distributed import DistributedContext
from cnnkit.train.fit import DataBundle, RunInfo, fit
from cnnkit.train.optim import ScheduleSpan, layerwise_lr_scale, parameter_groups
from cnnkit.train.run_summary import RunSummary, read_summary, write_summary


HEAD, ALL = "head", "all"
PhaseSchedule = Literal["per_phase", "across"]


@dataclass(frozen=True)
class Phase:
    """A stretch of fine-tuning: which parameters train, for how long, at what LR.

    `trainable` is "head", "all", or module names of the model joined by "+" ("layer3+layer4"),
    which train together with the head. `lr` sets the phase's base LR; without it the phase runs
    at `lr_scale` x the config's LR.
    """

    trainable: str
    epochs: int
    lr_scale: float = 1.0
    layer_decay: float | None = None
    lr: float | None = None

    @property
    def modules(self) -> tuple[str, ...]:
        """The module names a partial phase unfreezes (empty for "head" and "all")."""
        return () if self.trainable in (HEAD, ALL) else tuple(self.trainable.split("+"))

    def base_lr(self, config_lr: float) -> float:
        return self.lr if self.lr is not None else config_lr * self.lr_scale


_PHASE_FORM = "items like head:5, all:10@1e-5 or layer3+layer4:10@1e-4 (NAME[+NAME...]:EPOCHS[@LR])"


def parse_phases(text: str, *, unfrozen_lr_scale: float = 0.1, layer_decay: float = 0.7) -> tuple[Phase, ...]:
    """`"head:5@1e-3,layer3+layer4:10@1e-4,all:5@1e-5"` -> one Phase per item, each at its own LR.

    Without `@LR` (`"head:5,all:10"`): the head phase runs at the base LR, a phase that unfreezes
    more at `unfrozen_lr_scale` x base LR with layer-wise decay `layer_decay`. Module names are
    checked against the model by `check_phases`.
    """
    phases = []
    for item in text.split(","):
        item = item.strip()
        what, _, rest = item.partition(":")
        epochs, _, lr_text = rest.partition("@")
        names = what.split("+")
        if not epochs.isdigit() or int(epochs) < 1 or not all(names) or (len(names) > 1 and ALL in names):
            raise CnnkitError(f"--phases: expected {_PHASE_FORM}, got {item!r}")
        lr = None
        if lr_text:
            try:
                lr = float(lr_text)
            except ValueError:
                raise CnnkitError(f"--phases: {item!r}: the LR after @ must be a number, got {lr_text!r}") from None
            if lr <= 0:
                raise CnnkitError(f"--phases: {item!r}: the LR must be > 0")
        trainable = "+".join(n for n in names if n != HEAD) or HEAD
        if trainable == HEAD or lr is not None:
            phases.append(Phase(trainable, int(epochs), lr=lr))
        else:
            phases.append(Phase(trainable, int(epochs), lr_scale=unfrozen_lr_scale, layer_decay=layer_decay))
    return tuple(phases)


def check_phases(model: nn.Module, phases: Sequence[Phase]) -> None:
    """Every module name of `phases` must be a module of `model`; the error lists the valid names."""
    modules = dict(model.named_modules())
    for phase in phases:
        unknown = [name for name in phase.modules if not name or name not in modules]
        if unknown:
            children = ", ".join(name for name, _ in model.named_children())
            raise CnnkitError(
                f"--phases: {type(model).__name__} has no module {', '.join(map(repr, unknown))} "
                f"(in {phase.trainable!r}); its modules: {HEAD}, {ALL}, {children} "
                f"(or a dotted path inside them, e.g. a block)")


def set_trainable(model: nn.Module, head_path: str, trainable: str) -> None:
    """Freeze everything but the whole head holding `head_path` (`fc` for `fc.3`) and, for a
    partial phase, the named modules (`"layer3+layer4"`); or unfreeze all (`"all"`)."""
    paths = [head_path_of(head_path)] + ([] if trainable in (HEAD, ALL) else trainable.split("+"))
    keep = {id(p) for path in paths for p in module_at(model, path, (nn.Module,)).parameters()}
    for param in model.parameters():
        param.requires_grad_(trainable == ALL or id(param) in keep)


def parameter_stages(model: nn.Module) -> list[str]:
    """Module paths from input to output at the granularity of a network's stages: top-level
    children, with a long Sequential (torchvision's `features`) opened into its children."""
    stages = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential) and len(child) >= 4:
            stages += [f"{name}.{sub}" for sub, _ in child.named_children()]
        else:
            stages.append(name)
    return [s for s in stages if any(True for _ in model.get_submodule(s).parameters())]


def finetune(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    info: RunInfo,
    phases: Sequence[Phase],
    *,
    classifier_path: str,
    run_dir: str | Path,
    resume: bool = False,
    distributed: DistributedContext | None = None,
    quiet: bool = False,
    schedule: PhaseSchedule = "per_phase",
) -> RunSummary:
    """Run the phases one after another, each in `RUN/phaseK-<trainable>/` with its own
    checkpoints and its own LR: the schedule (e.g. cosine) runs within each phase, from the
    phase's LR to 0, or with `schedule="across"` once across all phases (each phase's LR times
    the schedule's factor at that point of the whole run). A resume skips finished phases and
    continues the interrupted one. The BatchNorms of a phase's frozen part, affine or not, keep
    their running statistics too (`cnnkit.train.frozen_norms`)."""
    run_dir = Path(run_dir)
    check_phases(model, phases)
    summaries = []
    for index, phase in enumerate(phases, start=1):
        phase_dir = run_dir / f"phase{index}-{phase.trainable}"
        finished = (phase_dir / "summary.json").exists()
        if finished and resume:
            model.load_state_dict(load_checkpoint(phase_dir / "last.pt")["model"])
            summaries.append(read_summary(phase_dir))
            continue
        set_trainable(model, classifier_path, phase.trainable)
        lr_scale = None
        if phase.layer_decay is not None:
            lr_scale = layerwise_lr_scale(model, phase.layer_decay, parameter_stages(model))
        phase_config = config.replace(epochs=phase.epochs, lr=phase.base_lr(config.lr))
        groups = parameter_groups(model, config.weight_decay, lr_scale)
        phase_resume = resume and (phase_dir / "last.pt").exists()
        label = PhaseLabel(index, len(phases), phase.trainable)
        span = ScheduleSpan(sum(p.epochs for p in phases[:index - 1]), sum(p.epochs for p in phases))
        summaries.append(fit(model, data, phase_config, info, run_dir=phase_dir, resume=phase_resume,
                             param_groups=groups, distributed=distributed, quiet=quiet, phase=label,
                             schedule_span=span if schedule == "across" else None))
    dist = distributed or DistributedContext()
    summary = dataclasses.replace(
        summaries[-1],
        epochs_run=sum(s.epochs_run for s in summaries),
        train_seconds=sum(s.train_seconds for s in summaries),
        phases=[{"trainable": p.trainable, "epochs": p.epochs, "epochs_run": s.epochs_run,
                 "lr": p.base_lr(config.lr), "best_metric": s.best_metric}
                for p, s in zip(phases, summaries)],
    )
    if dist.is_main:
        last_dir = run_dir / f"phase{len(phases)}-{phases[-1].trainable}"
        remove_stale_temporaries(run_dir)  # of a copy killed midway by an earlier run
        atomic_copy(last_dir / "best.safetensors", run_dir / "best.safetensors")
        # The run's recipe (its base LR; the epochs of all phases): what a resume of the whole run is
        # checked against, and what prune, distill and compare start from, as for any run directory.
        save_config(config.replace(epochs=sum(p.epochs for p in phases)), run_dir / "config.yaml")
        write_summary(run_dir, summary)
    return summary
