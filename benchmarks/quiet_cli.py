"""`cnnkit ...` run in-process by a benchmark, its per-run report kept off the benchmark's output."""

from __future__ import annotations

import contextlib
import io

from cnnkit.cli import main as cnnkit_main


def run_cnnkit(argv: list[str]) -> str:
    """Run `cnnkit argv` and return what it printed; a non-zero exit stops the benchmark with that output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cnnkit_main(argv)
    if code:
        raise SystemExit(f"cnnkit {' '.join(argv)} failed with {code}:\n{out.getvalue()}")
    return out.getvalue()
