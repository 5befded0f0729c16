"""Command-line flags generated from TrainConfig, so that every flag can also come from YAML.

Precedence: the flag given on the command line, else the YAML `--config` file, else the default.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.models.factory import parse_model_options
from cnnkit.train.config import TrainConfig, config_from_dict, read_yaml_mapping


@dataclass(frozen=True)
class RunOptions:
    """What a run is of, beside its hyper-parameters: the model (and its builder options), the
    run directory, input size, starting weights and augmentation. YAML may set them too."""

    model: str
    out: str | None = None
    img_size: int | None = None
    pretrained: str | None = None
    augment: str | None = None
    drop_outliers: bool = False
    model_options: dict[str, Any] = field(default_factory=dict)


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
    run: dict[str, Any] = {"model": default_model, **{k: v for k, v in from_file.items() if k in RUN_KEYS}}
    run.update({k: getattr(args, k) for k in RUN_KEYS if getattr(args, k, None) is not None})
    given = dict(run.get("model_options") or {})
    if not isinstance(given, dict):
        raise CnnkitError(f"--config {args.config}: model_options must be a mapping, got {given!r}")
    pairs = [f"{k}={v}" for k, v in given.items()] + list(getattr(args, "model_opt", None) or [])
    run["model_options"] = parse_model_options(run["model"], pairs)
    return config_from_dict(values, source=source), RunOptions(**run)
