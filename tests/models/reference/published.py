"""The zoo's published figures (params, MACs at an input size, source) as committed beside the
fixtures (published.json, copied from ../shared/reference/zoo.json by tools/make_reference_fixtures.py),
so the counts are checked in a checkout without ../shared too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PUBLISHED_JSON = Path(__file__).with_name("published.json")
SHARED_ZOO_JSON = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "zoo.json"


def published_figures() -> dict[str, dict[str, Any]]:
    """name -> {"source", "params", "input", "macs"} for every model of zoo.json."""
    figures = json.loads(PUBLISHED_JSON.read_text())
    figures.pop("_about")
    return figures
