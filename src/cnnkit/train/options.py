"""Command-line flags generated from TrainConfig, so that every flag can also come from YAML.

Precedence: the flag given on the command line, else the YAML `--config` file, else the default.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from cnnkit.data.augment_config import AugmentStep, parse_augment
from cnnkit.errors import CnnkitError
from cnnkit.models.factory import parse_model_options
from cnnkit.models.heads import HeadSpec
from cnnkit.train.config import TrainConfig, config_from_dict, read_yaml_mapping, typed_value


@dataclass(frozen=True)
class RunOptions:
    """What a run is of, beside its hyper-parameters: the model (and its builder options), the
    run directory, input size, starting weights, augmentation, the classifier head (`head`:
    "linear" or "mlp:256", with `head_dropout`; None keeps the model's own) and the fine-tuning
    phases. YAML may set them too."""

    model: str
    out: str | None = None
    img_size: int | None = None
    pretrained: str | None = None
    augment: str | tuple[AugmentStep, ...] | None = None  # a preset, or steps (a YAML list)
    drop_outliers: bool = False
    model_options: dict[str, Any] = field(default_factory=dict)
    head: str | None = None
    head_dropout: float | None = None
    phases: str | None = None  # `cnnkit finetune` only: "head:5@1e-3,layer3+layer4:10@1e-4,all:5@1e-5"
    phase_schedule: str | None = None  # `cnnkit finetune` only: "per_phase" (default) or "across"
    # `cnnkit finetune` only, for its phases without @LR: LR multiplier and layer-wise decay once unfrozen
    unfrozen_lr_scale: float | None = None
    layer_decay: float | None = None

    def __post_init__(self) -> None:
        if self.augment is not None:
            steps = parse_augment(self.augment, source="augment")  # unknown names fail here
            if not isinstance(self.augment, str):
                object.__setattr__(self, "augment", steps)
        if self.img_size is not None and self.img_size < 1:
            raise CnnkitError(f"img_size must be >= 1 pixel, got {self.img_size}")
        if self.head_dropout is not None:
            try:
                object.__setattr__(self, "head_dropout", float(self.head_dropout))
            except (TypeError, ValueError):
                raise CnnkitError(f"head_dropout must be a number, got {self.head_dropout!r}") from None
        self.head_spec()  # a malformed head is an error now, not after the data is read
        if self.phase_schedule not in (None, "per_phase", "across"):
            raise CnnkitError(f"phase_schedule must be per_phase or across, got {self.phase_schedule!r}")
        for name, high in (("unfrozen_lr_scale", float("inf")), ("layer_decay", 1.0)):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value <= high):
                raise CnnkitError(f"{name} must be a number in (0, {high}], got {value!r}")

    @property
    def finetune_only(self) -> dict[str, Any]:
        """The `cnnkit finetune` settings given (phases and how unfrozen phases train)."""
        names = ("phases", "phase_schedule", "unfrozen_lr_scale", "layer_decay")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def head_spec(self) -> HeadSpec | None:
        """The HeadSpec replacing the model's head; `head_dropout` alone means a Linear head with
        Dropout before it; neither: None (the model's own head)."""
        if self.head is None and self.head_dropout is None:
            return None
        return HeadSpec.parse(str(self.head or "linear"), dropout=self.head_dropout)


RUN_KEYS = tuple(f.name for f in fields(RunOptions))


def add_train_config_flags(parser: argparse.ArgumentParser) -> None:
    """One `--flag-name` per TrainConfig field, defaulting to None (= not given)."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training (each also settable in --config YAML)")
    for option in fields(TrainConfig):
        flag = "--" + option.name.replace("_", "-")
        kind, choices = _flag_type(hints[option.name])
        default = option.default if option.default is not MISSING else None
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=f"(default {default})")
        else:
            group.add_argument(flag, type=kind, choices=choices, default=None, metavar=None if choices else "X",
                               help=f"(default {default})")


def _flag_type(annotation: Any) -> tuple[type, tuple | None]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:
        return str, typing.get_args(annotation)
    return annotation, None


def flags_given(args: argparse.Namespace, names: typing.Iterable[str]) -> list[str]:
    """Those of the TrainConfig fields `names` given on the command line, as `--flag-name`."""
    return [f"--{name.replace('_', '-')}" for name in names if getattr(args, name, None) is not None]


def resolve(args: argparse.Namespace, *, default_model: str) -> tuple[TrainConfig, RunOptions]:
    """(TrainConfig, RunOptions) from flags, the optional YAML file, and defaults; unknown YAML
    keys are an error naming the file; `--model-opt key=value` is checked against the builder."""
    source = str(getattr(args, "config", None) or "flags")
    from_file = read_yaml_mapping(args.config) if getattr(args, "config", None) else {}
    config_keys = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(from_file) - set(RUN_KEYS) - config_keys)
    if unknown:
        raise CnnkitError(f"--config {args.config}: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(set(RUN_KEYS) | config_keys))}")
    values = {k: v for k, v in from_file.items() if k in config_keys}
    values.update({k: getattr(args, k) for k in config_keys if getattr(args, k, None) is not None})
    hints = typing.get_type_hints(RunOptions)
    run: dict[str, Any] = {"model": default_model}
    for key, value in from_file.items():  # augment and model_options are checked below and by RunOptions
        if key in RUN_KEYS:
            run[key] = value if key in ("augment", "model_options") else typed_value(key, value, hints[key], source)
    run.update({k: getattr(args, k) for k in RUN_KEYS if getattr(args, k, None) is not None})
    given = run.get("model_options") or {}
    if not isinstance(given, dict):
        raise CnnkitError(f"--config {args.config}: model_options must be a mapping, got {given!r}")
    pairs = [f"{k}={v}" for k, v in given.items()] + list(getattr(args, "model_opt", None) or [])
    run["model_options"] = parse_model_options(run["model"], pairs)
    config = config_from_dict(values, source=source)
    config.check_trainable()
    _refuse_unused(config, {k for k in config_keys if getattr(args, k, None) is not None})
    return config, RunOptions(**run)


# Settings that only one optimizer or schedule reads: given as flags for another, they would do
# nothing (in YAML they may stand in a whole saved config.yaml, every field there).
_ONLY_FOR = {"momentum": ("optimizer", "sgd"), "nesterov": ("optimizer", "sgd"),
             "step_size_epochs": ("schedule", "step"), "step_gamma": ("schedule", "step")}


def _refuse_unused(config: TrainConfig, given: set[str]) -> None:
    unused = [f"{name} (only for {key} {value})" for name, (key, value) in _ONLY_FOR.items()
              if name in given and getattr(config, key) != value]
    if "momentum" in given and config.optimizer == "sgd" and config.schedule == "onecycle" and config.momentum != 0:
        unused.append("momentum (onecycle cycles it 0.95-0.85-0.95; only --momentum 0, plain SGD, is taken)")
    if unused:
        raise CnnkitError(f"{', '.join(unused)} given but the run uses optimizer {config.optimizer} and schedule "
                          f"{config.schedule}: it would be ignored")
