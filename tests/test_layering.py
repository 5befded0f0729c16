"""The package layout is the architecture: imports only point down the layer list."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "cnnkit"
LAYERS = ["engine", "layers", "models", "analysis", "data", "train", "inference", "explain", "embeddings", "deploy", "serve"]
ANYWHERE = {"errors", "device_info"}  # importable by every layer except the engine


def _imported_cnnkit_packages(path: Path) -> set[str]:
    packages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "cnnkit" and len(parts) > 1:
                packages.add(parts[1])
    return packages


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_only_point_down(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1]) | (set() if layer == "engine" else ANYWHERE)
    for path in (SOURCE / layer).rglob("*.py"):
        wrong = _imported_cnnkit_packages(path) - allowed
        assert not wrong, f"{path.relative_to(SOURCE)} imports cnnkit.{', cnnkit.'.join(sorted(wrong))}"


def test_engine_runs_without_torch() -> None:
    """The NumPy engine must import with torch unavailable."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, cnnkit.engine as E\nfrom cnnkit.engine.conv import conv2d\n"
        "y = conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)))\n"
        "assert y.shape == (1, 1, 2, 2)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
