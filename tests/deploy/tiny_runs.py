"""Tiny finished runs for the prune/distill/compare tests: `make_tiny_folder`'s two colours, trained in seconds."""

from __future__ import annotations

from pathlib import Path

import torch
from colour_folders import make_tiny_folder
from torch import nn

from cnnkit.cli import main


def train_tiny_run(data: Path, out: Path, *, model: str = "compact_cnn", epochs: int = 2) -> Path:
    code = main(["train", str(data), "--model", model, "--epochs", str(epochs), "--batch-size", "8", "--lr", "0.003",
                 "--img-size", "16", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def train_val_run(root: Path, *, epochs: int = 1) -> tuple[Path, Path]:
    """(data, run): `make_tiny_folder`'s colours given as root/given/{train,val} (no test split, as
    hymenoptera), and a tiny run trained on them in root/run."""
    data = root / "given"
    make_tiny_folder(data / "train")
    make_tiny_folder(data / "val")
    return data, train_tiny_run(data, root / "run", epochs=epochs)


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
