"""docs/worked-examples.md, run: every `cnnkit` command of its code blocks prints the answer its comment gives.

The page tells a learner to run these commands to check the book's arithmetic; a command whose
output no longer shows (or never showed) the answer beside it would teach the wrong thing. Each
command is run through the CLI in-process; the set of commands must equal the page's, so a
command added to the page without an answer here fails, as does an answer whose command left it.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cnnkit import cli

PAGE = Path(__file__).resolve().parents[2] / "docs" / "worked-examples.md"


@pytest.fixture(autouse=True)
def analysis_commands_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # The page's commands are all this package's: the test must not depend on other packages' commands.
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("cnnkit.analysis.commands",))


def _code_blocks(language: str = "") -> list[list[str]]:
    """The lines of each fenced block of the page opened with ```<language>."""
    blocks, opened, lines = [], None, []
    for line in PAGE.read_text().splitlines():
        if line.startswith("```") and opened is None:
            opened, lines = line.removeprefix("```").strip(), []
        elif line.startswith("```"):
            if opened == language:
                blocks.append(lines)
            opened = None
        elif opened is not None:
            lines.append(line)
    return blocks


def _page_commands() -> list[str]:
    """Each `cnnkit ...` command of the page's shell blocks, without the `cnnkit` and the comment."""
    return [line.split("#")[0].strip().removeprefix("cnnkit ") for block in _code_blocks()
            for line in block if line.startswith("cnnkit ")]


def _table_column(output: str, row_pattern: str) -> list[int]:
    """The RF column of the table rows whose layer matches `row_pattern` (`cnnkit conv --stack`/`rf`)."""
    rows = re.findall(rf"^\s*\d+\s+({row_pattern})\b.*?\s(\d+)\s+(\d+)\s*$", output, re.M)
    return [int(rf) for _, rf, _ in rows]


def _stack_rfs(expected: list[int]) -> Callable[[str], None]:
    def check(output: str) -> None:
        assert _table_column(output, r"k\S+") == expected
    return check


def _contains(*fragments: str) -> Callable[[str], None]:
    def check(output: str) -> None:
        for fragment in fragments:
            assert re.search(fragment, output, re.M), f"{fragment!r} not in the output"
    return check


def _last_rf_of(prefixes: dict[str, int]) -> Callable[[str], None]:
    def check(output: str) -> None:
        for prefix, answer in prefixes.items():
            assert _table_column(output, re.escape(prefix) + r"\S*(?: \(\w+\))?")[-1] == answer, prefix
    return check


# The page's commands and what their comments promise.
ANSWERS: dict[str, Callable[[str], None]] = {
    "conv --in 224 --kernel 7 --stride 2 --padding 3": _contains("output size: 112x112"),
    "conv --in 112 --kernel 3 --stride 2 --padding 1": _contains("output size: 56x56"),
    "conv --in 224 --kernel 3 --stride 2": _contains("output size: 111x111"),
    "conv --in 64 --kernel 5 --stride 2 --padding 1": _contains("output size: 31x31"),
    "conv --in 56 --kernel 3 --dilation 2 --padding 2": _contains("output size: 56x56"),
    "conv --in 5 --kernel 3 --stride 2 --padding 1": _contains("output size: 3x3"),
    "conv --in 224 --kernel 16 --stride 16": _contains("output size: 14x14"),
    "conv --in 224 --kernel 7 --in-ch 3 --out-ch 64": _contains("parameters: 9,472 with bias, 9,408 without"),
    "conv --in 56 --kernel 3 --in-ch 256 --out-ch 256": _contains("parameters: 590,080 with bias"),
    "summary vgg16": _contains(r"^classifier\.0 \(Linear\) .* 102,764,544 ", "^Total params: 138,357,544 "),
    "summary resnet50": _contains(r"^fc \(Linear\) .* 2,049,000 "),
    "conv --in 56 --kernel 3 --in-ch 64 --out-ch 128": _contains(
        "73,728 without", "alternative: 8,768 parameters", r"ratio 0\.119 "),
    "conv --stack k1,k3,k1": _stack_rfs([1, 3, 3]),
    "conv --stack k3,k3": _stack_rfs([3, 5]),
    'conv --stack "k3,k3,k3,k3,k3"': _stack_rfs([3, 5, 7, 9, 11]),
    'conv --stack "k3,k3s2,k3"': _stack_rfs([3, 5, 9]),
    'conv --stack "k3,k3d2,k3d4,k3d8"': _stack_rfs([3, 7, 15, 31]),
    'conv --stack "k7s2,k3s2,k3,k3,k3s2,k3,k3s2,k3,k3s2,k3,k3s2"': _stack_rfs(
        [7, 11, 19, 27, 35, 51, 67, 99, 131, 195, 259]),
    "rf resnet50 --plot rf.png": _last_rf_of({"layer1.": 35, "layer2.": 91, "layer3.": 267, "layer4.": 427}),
    "rf vgg19": _contains(r"features\.34 \(Conv2d\)\s+252\s", r"features\.36 \(MaxPool2d\)\s+268\s"),
}


def test_the_page_runs_exactly_the_commands_checked_here() -> None:
    assert sorted(_page_commands()) == sorted(ANSWERS)


@pytest.mark.parametrize("command", list(ANSWERS))
def test_each_command_prints_the_answer_its_comment_gives(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # `--plot rf.png` writes into the working directory
    assert cli.main(shlex.split(command)) == 0
    ANSWERS[command](capsys.readouterr().out)
    if "--plot" in command:
        assert (tmp_path / "rf.png").read_bytes()[:4] == b"\x89PNG"


def test_the_python_example_gives_the_map_its_comment_gives() -> None:
    (block,) = _code_blocks("python")
    *statements, last = block
    expression, answer = last.split("#")
    namespace: dict[str, object] = {}
    exec("\n".join(statements), namespace)  # the page's own code, as a learner would paste it
    np.testing.assert_array_equal(eval(expression, namespace), ast.literal_eval(answer.strip()))
