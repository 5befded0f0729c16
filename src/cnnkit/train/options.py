"""Command-line flags generated from TrainConfig, so that every flag can also come from YAML.

Precedence: the flag given on the command line, else the YAML `--config` file, else the default.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from cnnkit.data.augment_config import AugmentStep, parse_augment
from cnnkit.errors import CnnkitError
from cnnkit.models.factory import parse_model_options
from cnnkit.models.heads import HeadSpec
from cnnkit.train.config import TrainConfig, config_from_dict, read_yaml_mapping, typed_value
from cnnkit.train.optim import cycles_momentum


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


CONFIG_TITLE = "training (each also settable in --config YAML)"

# The metavar `--help` shows for a flag of each value type (a flag with choices shows them instead).
FLAG_METAVARS: dict[type, str] = {int: "N", float: "FLOAT", str: "NAME"}

# What each TrainConfig field does, and its default in words where the value alone says too little
# (None: the default is the field's own value, "on"/"off" for a switch).
_HELP: dict[str, tuple[str, str | None]] = {
    "epochs": ("passes over the training set", None),
    "batch_size": ("images per forward/backward pass (per process under torchrun); an optimizer step takes "
                   "--accumulate-steps of them", None),
    "accumulate_steps": ("gradient accumulation: micro-batches of --batch-size summed into one optimizer step, "
                         "an effective batch of batch-size x N (x processes under torchrun); the LR schedule, "
                         "clipping and EMA count optimizer steps", "1: a step per batch"),
    "lr": ("base learning rate, which --schedule scales step by step", None),
    "optimizer": ("adamw: decoupled weight decay; adam: decay added to the gradient (L2); sgd: see --momentum",
                  None),
    "momentum": ("SGD momentum, sgd only; 0 is plain SGD", None),
    "nesterov": ("Nesterov momentum, sgd only", None),
    "weight_decay": ("weight decay of conv/linear weights (biases and norm layers get none)", None),
    "schedule": ("LR over the steps: cosine to 0, step (x --step-gamma every --step-size-epochs), "
                 "onecycle (torch's OneCycleLR), constant", None),
    "warmup_epochs": ("epochs (fractions too) of linear LR warm-up to --lr; not with onecycle", "0: none"),
    "step_size_epochs": ("--schedule step: epochs between LR drops", None),
    "step_gamma": ("--schedule step: LR multiplier at each drop", None),
    "label_smoothing": ("share of each target spread evenly over all classes, in [0, 1)", "0: hard labels"),
    "class_weighted_loss": ("weight the cross-entropy of class k by N / (K n_k) of the training labels", None),
    "balanced_sampling": ("draw each epoch with replacement, inversely to class frequency", None),
    "mixup_alpha": ("MixUp: blend pairs of images and their labels, weight ~ Beta(a, a)", "0: off"),
    "cutmix_alpha": ("CutMix: paste a box of another image, labels by area ~ Beta(a, a); with MixUp each batch "
                     "picks one", "0: off"),
    "grad_clip_norm": ("clip the global L2 norm of the gradients to this", "no clipping"),
    "ema_decay": ("keep an exponential moving average of the weights (e.g. 0.999), evaluated and saved as "
                  "best", "none"),
    "early_stopping_patience": ("stop after N epochs without improvement of --monitor", "never"),
    "monitor": ("metric that picks the best epoch (best.safetensors): val_top1, val_top5, val_loss, train_loss",
                "val_top1; train_loss without a val split"),
    "monitor_mode": ("max: higher --monitor is better (accuracy); min: lower is (loss)", None),
    "precision": ("fp32, or bf16/fp16 mixed precision; auto: bf16 where native, fp16 on other GPUs, else fp32",
                  None),
    "channels_last": ("channels-last (NHWC) memory layout, faster on CPU", None),
    "compile": ("torch.compile the model", None),
    "device": ("cpu, cuda, cuda:1, ...", "CUDA when available, else CPU"),
    "seed": ("seed of the data split, shuffling, augmentation and weight init", None),
    "deterministic": ("torch's deterministic algorithms (a warning where an op has none)", None),
    "num_workers": ("data-loading worker processes; 0 loads in the main process", None),
    "nan_policy": ("on a NaN/inf loss: stop (last checkpoint intact) or skip that batch", None),
    "checkpoint_every_steps": ("also save last.pt every N optimizer steps within an epoch, for --resume",
                               "at epoch ends only"),
}


def add_train_config_flags(parser: argparse.ArgumentParser, *, title: str, show_defaults: bool = True) -> None:
    """One `--flag-name` per TrainConfig field, defaulting to None (= not given), in a group named
    `title` (CONFIG_TITLE where the command has --config). `show_defaults=False` where an unset
    flag keeps another run's value rather than TrainConfig's default (title says whose)."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group(title)
    for option in fields(TrainConfig):
        flag = "--" + option.name.replace("_", "-")
        kind, choices = _flag_type(hints[option.name])
        what, default = _HELP[option.name]
        if default is None:
            default = ("on" if option.default else "off") if kind is bool else f"{option.default}"
        text = f"{what} (default: {default})" if show_defaults else what
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(flag, type=kind, choices=choices, default=None,
                               metavar=None if choices else FLAG_METAVARS[kind], help=text)


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
    if "momentum" in given and config.optimizer == "sgd" and cycles_momentum(config):
        unused.append("momentum (onecycle cycles it 0.95-0.85-0.95; only --momentum 0, plain SGD, is taken)")
    if unused:
        raise CnnkitError(f"{', '.join(unused)} given but the run uses optimizer {config.optimizer} and schedule "
                          f"{config.schedule}: it would be ignored")
