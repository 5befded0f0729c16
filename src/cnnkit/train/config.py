"""One frozen config for a training run, loadable from YAML; unknown keys are an error."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from cnnkit.errors import CnnkitError
from cnnkit.train.checkpoint import atomic_write

OptimizerName = Literal["sgd", "adam", "adamw"]  # adam: L2 weight decay in the gradient; adamw: decoupled
ScheduleName = Literal["cosine", "step", "onecycle", "constant"]
Precision = Literal["fp32", "bf16", "fp16", "auto"]  # auto: bf16 where native (cnnkit.train.precision)
NanPolicy = Literal["stop", "skip"]
MonitorMode = Literal["max", "min"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a run computes (the run directory stores it as config.yaml)."""

    epochs: int = 10
    batch_size: int = 64
    # Micro-batches of batch_size whose gradients add up to one optimizer step (timm's
    # --grad-accum-steps): the effective batch is batch_size x accumulate_steps (x world size).
    accumulate_steps: int = 1
    lr: float = 1e-3
    optimizer: OptimizerName = "adamw"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.05
    schedule: ScheduleName = "cosine"
    warmup_epochs: float = 0.0
    step_size_epochs: int = 30
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    # Imbalanced data: cross-entropy weighted by N / (K * n_k) of the training labels, and/or each
    # epoch drawn with replacement with probability inverse to class frequency (seeded per epoch).
    class_weighted_loss: bool = False
    balanced_sampling: bool = False
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    grad_clip_norm: float | None = None
    ema_decay: float | None = None
    early_stopping_patience: int | None = None
    monitor: str = "val_top1"
    monitor_mode: MonitorMode = "max"
    precision: Precision = "fp32"
    channels_last: bool = True  # 1.50x faster fp32 training on this CPU (benchmarks/RESULTS.md)
    compile: bool = False
    device: str | None = None
    seed: int = 0
    deterministic: bool = True
    num_workers: int = 0
    nan_policy: NanPolicy = "stop"
    checkpoint_every_steps: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise CnnkitError(f"config: {name} must be >= 1, got {getattr(self, name)}")
        steps = self.accumulate_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise CnnkitError(f"config: accumulate_steps must be a whole number >= 1 (micro-batches per optimizer "
                              f"step; 1: no accumulation), got {steps!r}")
        if not 0 < self.lr < math.inf:
            raise CnnkitError(f"config: lr must be a finite number > 0, got {self.lr}")
        for name in ("early_stopping_patience", "checkpoint_every_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise CnnkitError(f"config: {name} must be >= 1 (or unset), got {getattr(self, name)}")
        for name in ("warmup_epochs", "mixup_alpha", "cutmix_alpha", "num_workers"):
            if getattr(self, name) < 0:
                raise CnnkitError(f"config: {name} must be >= 0, got {getattr(self, name)}")
        for name, allowed in (
            ("optimizer", OptimizerName),
            ("schedule", ScheduleName),
            ("precision", Precision),
            ("nan_policy", NanPolicy),
            ("monitor_mode", MonitorMode),
        ):
            if getattr(self, name) not in allowed.__args__:
                raise CnnkitError(f"config: {name} must be one of {allowed.__args__}, got {getattr(self, name)!r}")

    def check_trainable(self) -> None:
        """Values torch would refuse mid-run, take without effect, or that contradict each other,
        refused by name. Called by the Trainer and the CLI before a run starts, not on reading a
        finished run's config.yaml (so that runs saved before these checks still load)."""
        for name, low, high in (("weight_decay", 0.0, math.inf), ("momentum", 0.0, 1.0),
                                ("label_smoothing", 0.0, 1.0)):
            if not low <= getattr(self, name) < high:
                raise CnnkitError(f"config: {name} must be in [{low}, {high}), got {getattr(self, name)}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise CnnkitError(f"config: ema_decay must be in (0, 1) (or unset), got {self.ema_decay}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise CnnkitError(f"config: grad_clip_norm must be > 0 (or unset), got {self.grad_clip_norm}")
        if self.step_size_epochs < 1 or not self.step_gamma > 0:
            raise CnnkitError(f"config: step_size_epochs must be >= 1 and step_gamma > 0, got "
                              f"{self.step_size_epochs} and {self.step_gamma}")
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise CnnkitError("config: nesterov needs momentum > 0 (momentum 0 is plain SGD: set nesterov false, "
                              "--no-nesterov)")
        wrong_way = {"max": "loss", "min": "top"}[self.monitor_mode]  # lower loss / higher accuracy is better
        if wrong_way in self.monitor.rsplit("_", 1)[-1]:
            raise CnnkitError(f"config: monitor {self.monitor} with monitor_mode {self.monitor_mode} would keep its "
                              f"worst epoch as best.safetensors: set monitor_mode "
                              f"{'min' if self.monitor_mode == 'max' else 'max'}")
        if self.schedule == "onecycle" and self.warmup_epochs:
            raise CnnkitError(f"config: warmup_epochs ({self.warmup_epochs}) does not apply to the onecycle schedule, "
                              "whose warm-up is its first 30% of steps: leave it at 0")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_from_dict(values: dict[str, Any], *, source: str = "config") -> TrainConfig:
    """Build a TrainConfig, refusing keys it does not know (a typo must not be silently ignored)."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CnnkitError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(TrainConfig)
    return TrainConfig(**{key: typed_value(key, value, hints[key], source) for key, value in values.items()})


def typed_value(key: str, value: Any, hint: Any, source: str) -> Any:
    """`value` checked against the field's type; a YAML string such as 1e-3 (YAML 1.1 reads a
    float without a dot as a string) becomes the float it spells."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    if float in allowed and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    plain = tuple(t for t in allowed if isinstance(t, type) and t is not type(None))
    wrong_bool = isinstance(value, bool) and bool not in plain
    if (plain and not isinstance(value, plain)) or wrong_bool:
        raise CnnkitError(f"{source}: {key} must be {' or '.join(t.__name__ for t in plain)}, got {value!r}")
    return value


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The key-value mapping in a YAML file; errors name the file."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise CnnkitError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:  # a folder, an unreadable or binary file
        raise CnnkitError(f"cannot read config file {path}: {error}") from None
    except yaml.YAMLError as error:
        raise CnnkitError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise CnnkitError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
    return values


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML mapping of TrainConfig fields."""
    return config_from_dict(read_yaml_mapping(path), source=str(path))


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write config.yaml atomically: a resume checks its settings against it (a kill while a resume
    rewrote it left a cut file that refused every later resume)."""
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    atomic_write(path, lambda f: f.write(text.encode()))
