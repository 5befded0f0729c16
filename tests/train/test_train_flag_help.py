"""The training flags' `--help`: each says what it does, and the group title is true of its command."""

from __future__ import annotations

import argparse
import re
import types
import typing
from dataclasses import fields

import pytest
from help_text import help_entries

from cnnkit.cli import build_parser
from cnnkit.train.config import TrainConfig

FLAGS = {"--" + f.name.replace("_", "-") for f in fields(TrainConfig)}
ONLY_A_DEFAULT = re.compile(r"^\(default:? [^)]*\)$")


def _commands() -> dict[str, argparse.ArgumentParser]:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def _training_group(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    return next(g for g in parser._action_groups
                if any("--nan-policy" in a.option_strings for a in g._group_actions))


COMMANDS = sorted(name for name, parser in _commands().items()
                  if any("--nan-policy" in a.option_strings for a in parser._actions))


def test_the_training_group_is_on_every_training_command() -> None:
    assert {"train", "finetune", "lr-find", "prune", "distill", "compare"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_training_flag_says_what_it_does(command: str) -> None:
    group = _training_group(_commands()[command])
    helps = {a.option_strings[0]: (a.help or "").strip() for a in group._group_actions}
    assert set(helps) == FLAGS, "one flag per TrainConfig field, all in the group"
    bare = sorted(flag for flag, text in helps.items() if not text or ONLY_A_DEFAULT.match(text))
    assert not bare, f"{command}: help is only a default: {bare}"


@pytest.mark.parametrize("command", COMMANDS)
def test_the_group_title_mentions_config_only_where_the_command_takes_it(command: str) -> None:
    parser = _commands()[command]
    takes_config = any("--config" in a.option_strings for a in parser._actions)
    title = _training_group(parser).title or ""
    assert ("--config" in title) == takes_config, f"{command}: title {title!r}, --config accepted: {takes_config}"


def test_defaults_in_words_match_the_config() -> None:
    """`cnnkit train --help` states the defaults TrainConfig really has (a changed default shows)."""
    group = _training_group(_commands()["train"])
    helps = {a.dest: a.help for a in group._group_actions}
    config = TrainConfig()
    assert helps["epochs"].endswith(f"(default: {config.epochs})")
    assert helps["lr"].endswith(f"(default: {config.lr})")
    assert helps["schedule"].endswith(f"(default: {config.schedule})")
    assert helps["channels_last"].endswith("(default: on)") and config.channels_last
    assert helps["compile"].endswith("(default: off)") and not config.compile
    assert config.device is None and "CUDA when available, else CPU" in helps["device"]


@pytest.mark.parametrize("command", ["prune", "distill"])
def test_commands_that_inherit_a_runs_config_claim_no_default(command: str) -> None:
    """prune/distill start from the source run's config.yaml: TrainConfig's defaults would be wrong there."""
    group = _training_group(_commands()[command])
    assert "config.yaml" in (group.title or "")
    assert not [a.dest for a in group._group_actions if "(default" in (a.help or "")]


def _expected_metavar(annotation: object) -> str:
    """What `--help` should show for a TrainConfig field: its choices, or a word for its type."""
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    (kind,) = [a for a in typing.get_args(annotation) if a is not type(None)] if optional else [annotation]
    if typing.get_origin(kind) is typing.Literal:
        return "{" + ",".join(typing.get_args(kind)) + "}"
    return {bool: "", int: "N", float: "FLOAT", str: "NAME"}[kind]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_training_flag_shows_a_metavar_of_its_type(command: str) -> None:
    """argparse's own rendering: `--lr FLOAT`, `--epochs N`, `--schedule {cosine,...}`, a bare switch."""
    shown = help_entries(_commands()[command].format_help())
    hints = typing.get_type_hints(TrainConfig)
    wanted = {flag: _expected_metavar(hints[flag[2:].replace("-", "_")]) for flag in FLAGS}
    assert {flag: shown[flag][0] for flag in FLAGS} == wanted
