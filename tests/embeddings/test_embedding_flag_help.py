"""The embedding flags of `cnnkit train --help`: what each does, its default from EmbeddingOptions."""

from __future__ import annotations

import argparse

from help_text import help_entries

from cnnkit.cli import build_parser
from cnnkit.embeddings.fit import EmbeddingOptions

FLAGS = ("--task", "--loss", "--embedding-dim", "--holdout-classes", "--margin", "--scale", "--mining", "--pk")


def _train_help() -> str:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["train"].format_help()


def test_each_embedding_flag_says_what_it_does_and_its_default() -> None:
    shown = help_entries(_train_help())
    for flag in FLAGS:
        metavar, text = shown[flag]
        assert metavar != flag[2:].replace("-", "_").upper(), f"{flag}: argparse's fallback metavar {metavar}"
        what, _, default = text.partition("(default: ")
        assert len(what.split()) >= 4 and default.endswith(")"), f"{flag}: {text!r}"
    defaults = EmbeddingOptions()
    assert shown["--loss"][1].endswith(f"(default: {defaults.loss})")
    assert shown["--embedding-dim"] == ("N", shown["--embedding-dim"][1])
    assert shown["--embedding-dim"][1].endswith(f"(default: {defaults.embedding_dim})")
    assert f"(default: {defaults.holdout_classes}:" in shown["--holdout-classes"][1]
    assert shown["--task"][1].endswith("(default: classification)")
    assert (shown["--margin"][0], shown["--scale"][0], shown["--pk"][0]) == ("FLOAT", "FLOAT", "PxK")
