"""Command-line flags generated from TrainConfig, so that every flag can also come from YAML.

Precedence: the flag given on the command line, else the YAML `--config` file, else the default.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, fields
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.train.config import TrainConfig, config_from_dict, read_yaml_mapping

# Keys of a run that are not training hyper-parameters; YAML may set them too.
RUN_KEYS = {"model": None, "out": None, "img_size": None, "pretrained": None, "augment": None}


def add_train_config_flags(parser: argparse.ArgumentParser) -> None:
    """One `--flag-name` per TrainConfig field, defaulting to None (= not given)."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training (each also settable in --config YAML)")
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kind, choices = _flag_type(hints[field.name])
        default = field.default if field.default is not MISSING else None
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


def resolve(args: argparse.Namespace, run_defaults: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """(TrainConfig, run options) from flags, the optional YAML file, and defaults; unknown YAML
    keys are an error naming the file."""
    from_file = read_yaml_mapping(args.config) if getattr(args, "config", None) else {}
    run_keys = set(RUN_KEYS) | set(run_defaults)
    config_keys = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(from_file) - run_keys - config_keys)
    if unknown:
        raise CnnkitError(f"--config {args.config}: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(run_keys | config_keys))}")
    values = {k: v for k, v in from_file.items() if k in config_keys}
    values.update({k: getattr(args, k) for k in config_keys if getattr(args, k, None) is not None})
    run = {**RUN_KEYS, **run_defaults, **{k: v for k, v in from_file.items() if k in run_keys}}
    run.update({k: getattr(args, k) for k in run_keys if getattr(args, k, None) is not None})
    return config_from_dict(values, source=str(getattr(args, "config", None) or "flags")), run
