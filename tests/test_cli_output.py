"""The `cnnkit` entry point as a shell runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def test_output_piped_into_a_reader_that_leaves_ends_without_a_traceback() -> None:
    # `cnnkit rf resnet50 | head -3`: the reader closes the pipe before cnnkit writes (its imports take a
    # second), so every write meets a broken pipe.
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "cnnkit", "conv", "--stack", "k3,k3,k3"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=60) == 1
    assert stderr == "", stderr


def test_an_unknown_argument_is_refused_with_the_command_s_own_usage(capsys) -> None:
    from cnnkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["summary", "resnet18", "stray.jpg", "--num-classes", "3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: cnnkit summary "), err  # argparse's default showed `cnnkit [-h] COMMAND ...`
    assert err.rstrip().endswith("cnnkit summary: error: unrecognized arguments: stray.jpg"), err


def test_an_error_names_its_command_once(capsys) -> None:
    """'cnnkit serve: error: serve: binding to 0.0.0.0 ...' named the command twice."""
    from cnnkit.cli import main

    assert main(["serve", "no/such/run", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnkit serve: error: binding to 0.0.0.0 (not loopback) needs --api-key-file"), err
