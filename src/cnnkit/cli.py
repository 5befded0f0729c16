"""The `cnnkit` command: one entry point, a sub-command per task.

Each sub-command lives beside the code it drives (e.g. `cnnkit.data.commands`) and
exposes `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from cnnkit.errors import CnnkitError

# Modules that contribute sub-commands, imported on start; each defines `register`.
COMMAND_MODULES = (
    "cnnkit.train.demo",
    "cnnkit.train.commands",
    "cnnkit.inference.commands",
    "cnnkit.analysis.commands",
    "cnnkit.data.commands",
    "cnnkit.explain.report_commands",
    "cnnkit.explain.commands",
    "cnnkit.embeddings.commands",  # after cnnkit.train.commands: it extends `train` with --task embedding
    "cnnkit.deploy.train_commands",
    "cnnkit.deploy.commands",
    "cnnkit.serve.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnkit",
        description="cnnkit: build, train, explain and ship convolutional neural networks.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The sub-parser of `command` (`cnnkit COMMAND ...`)."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


def _note_handler() -> logging.Handler:
    """Library notes (e.g. "classifier re-initialised for 5 classes") go to the 'cnnkit' logger at
    INFO; a command shows them on its stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cnnkit: %(message)s"))
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # refused by the command's own parser, so the message shows that command's usage
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    logger, handler = logging.getLogger("cnnkit"), _note_handler()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return int(args.func(args) or 0)
    except CnnkitError as error:
        # A library message may name its command itself ("serve: ..."), which the prefix already says.
        message = str(error).removeprefix(f"{args.command}: ")
        print(f"cnnkit {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cnnkit summary resnet50 | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        return 1
    finally:
        logger.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
