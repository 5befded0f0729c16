"""Tiny image folders for tests: one class per colour, each image noise with one dominant channel."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_colour_folders(root: Path, classes: Sequence[tuple[str, int]], *, images: int, size: tuple[int, int],
                         noise_below: int, channel_from: int, suffix: str = ".png") -> Path:
    """root/<name>/<i><suffix> for each (name, dominant channel): uint8 noise in [0, noise_below) with the
    dominant channel in [channel_from, 256), seeded (0), so every call writes the same pixels."""
    rng = np.random.default_rng(0)
    for name, channel in classes:
        (root / name).mkdir(parents=True)
        for i in range(images):
            pixels = rng.integers(0, noise_below, size=(*size, 3), dtype=np.uint8)
            pixels[..., channel] = rng.integers(channel_from, 256, size=size, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}{suffix}")
    return root


def make_tiny_folder(root: Path) -> Path:
    """Two classes of 24 16x16 PNGs: bluish and reddish squares with noise."""
    return write_colour_folders(root, (("blue", 2), ("red", 0)), images=24, size=(16, 16), noise_below=80,
                                channel_from=170)
