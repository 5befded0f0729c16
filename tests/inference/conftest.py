"""A tiny trained run on a folder of PNGs, shared by the inference tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main


@pytest.fixture(scope="package")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of 20x18 PNGs (not the model's 16x16: the resize is exercised), reddish and bluish."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for name, channel in (("blue", 2), ("red", 0)):
        (root / name).mkdir()
        for i in range(24):
            pixels = rng.integers(0, 80, size=(18, 20, 3), dtype=np.uint8)
            pixels[..., channel] = rng.integers(170, 256, size=(18, 20), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="package")
def tiny_run(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["train", str(tiny_folder), "--model", "compact_cnn", "--epochs", "2", "--batch-size", "8",
                 "--lr", "0.003", "--img-size", "16", "--out", str(out), "--quiet"])
    assert code == 0
    return out
