"""The `cnnkit` entry point as a shell runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
