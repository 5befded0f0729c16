"""Transfer learning in phases: train the new head on a frozen backbone, then everything with
layer-wise learning-rate decay (Howard & Ruder 2018, ULMFiT's gradual unfreezing)."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.adapt import module_at
from cnnkit.models.heads import head_path_of
from cnnkit.train.checkpoint import load_checkpoint
from cnnkit.train.config import TrainConfig
from cnnkit.train.distributed import DistributedContext
from cnnkit.train.fit import DataBundle, RunInfo, fit
from cnnkit.train.optim import layerwise_lr_scale, parameter_groups
from cnnkit.train.run_summary import RunSummary, read_summary, write_summary


@dataclass(frozen=True)
class Phase:
    """A stretch of fine-tuning: which parameters train, for how long, at what LR."""

    trainable: Literal["head", "all"]
    epochs: int
    lr_scale: float = 1.0
    layer_decay: float | None = None


def parse_phases(text: str, *, unfrozen_lr_scale: float = 0.1, layer_decay: float = 0.7) -> tuple[Phase, ...]:
    """`"head:5,all:10"` -> head for 5 epochs at the base LR, then all layers for 10 epochs at
    `unfrozen_lr_scale` x base LR with layer-wise decay."""
    phases = []
    for item in text.split(","):
        name, _, epochs = item.strip().partition(":")
        if name not in ("head", "all") or not epochs.isdigit() or int(epochs) < 1:
            raise CnnkitError(f"--phases: expected items like head:5 or all:10, got {item.strip()!r}")
        if name == "head":
            phases.append(Phase("head", int(epochs)))
        else:
            phases.append(Phase("all", int(epochs), lr_scale=unfrozen_lr_scale, layer_decay=layer_decay))
    return tuple(phases)


def set_trainable(model: nn.Module, head_path: str, trainable: Literal["head", "all"]) -> None:
    """Freeze everything but the whole head holding `head_path` (`fc` for `fc.3`), or unfreeze all."""
    head = {id(p) for p in module_at(model, head_path_of(head_path), (nn.Module,)).parameters()}
    for param in model.parameters():
        param.requires_grad_(trainable == "all" or id(param) in head)


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
) -> RunSummary:
    """Run the phases one after another, each in `RUN/phaseK-<trainable>/` with its own
    checkpoints; a resume skips finished phases and continues the interrupted one."""
    run_dir = Path(run_dir)
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
        phase_config = config.replace(epochs=phase.epochs, lr=config.lr * phase.lr_scale)
        groups = parameter_groups(model, config.weight_decay, lr_scale)
        phase_resume = resume and (phase_dir / "last.pt").exists()
        summaries.append(fit(model, data, phase_config, info, run_dir=phase_dir, resume=phase_resume,
                             param_groups=groups, distributed=distributed, quiet=quiet))
    dist = distributed or DistributedContext()
    summary = dataclasses.replace(summaries[-1], phases=[
        {"trainable": p.trainable, "epochs": p.epochs, "best_metric": s.best_metric}
        for p, s in zip(phases, summaries)
    ])
    if dist.is_main:
        last_dir = run_dir / f"phase{len(phases)}-{phases[-1].trainable}"
        shutil.copyfile(last_dir / "best.safetensors", run_dir / "best.safetensors")
        write_summary(run_dir, summary)
    return summary
