"""Tiny finished runs for the prune/distill/compare tests: 48 16x16 PNGs of two colours, trained in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from cnnkit.cli import main


def make_tiny_folder(root: Path) -> Path:
    """Two classes of 16x16 PNGs: reddish and bluish squares with noise."""
    rng = np.random.default_rng(0)
    for name, channel in (("blue", 2), ("red", 0)):
        (root / name).mkdir(parents=True)
        for i in range(24):
            pixels = rng.integers(0, 80, size=(16, 16, 3), dtype=np.uint8)
            pixels[..., channel] = rng.integers(170, 256, size=(16, 16), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def train_tiny_run(data: Path, out: Path, *, model: str = "compact_cnn", epochs: int = 2) -> Path:
    code = main(["train", str(data), "--model", model, "--epochs", str(epochs), "--batch-size", "8", "--lr", "0.003",
                 "--img-size", "16", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def randomise_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN statistics and affine parameters (fresh ones would hide a wrong channel index)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(0.2 * torch.randn(n, generator=generator))
