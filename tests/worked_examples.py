"""The project's table of known answers, ../shared/reference/worked-examples.md, and the check that
the answers a test module copied from it still appear there (skipped in a checkout without
../shared, where the copies are tested on their own)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "worked-examples.md"


def assert_answers_in_reference(answers: Sequence[str]) -> None:
    """Every string of `answers` occurs in the reference table (runs of blanks read as one)."""
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} not found: the answers copied into the tests are tested on their own")
    text = re.sub(r"[ \t]+", " ", REFERENCE.read_text())
    missing = [answer for answer in answers if answer not in text]
    assert not missing, f"answers copied into the tests no longer appear in {REFERENCE.name}: {missing}"
