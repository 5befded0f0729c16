"""Helpers of the benchmarks that train on MNIST: a seeded class-balanced subset of MNIST's training
images (with the full 10,000-image test set) as a .npz that `cnnkit` reads like any dataset, which
keeps the deploy benchmarks within minutes on a shared CPU; and `cnnkit ...` run in-process quietly."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from cnnkit.cli import main as cnnkit_main
from cnnkit.data.sources import open_source


def write_mnist_subset(mnist: Path, out: Path, *, train_size: int, seed: int = 0) -> Path:
    """x_train/y_train: `train_size` images, the same count per digit; x_test/y_test: the whole test set."""
    source = open_source(str(mnist))
    train, test = source.splits["train"], source.splits["test"]
    labels = np.asarray(train.targets)
    rng = np.random.default_rng(seed)
    chosen = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == k), train_size // 10, replace=False)
                                     for k in range(10)]))
    np.savez(out, x_train=train.images[chosen], y_train=labels[chosen], x_test=test.images,
             y_test=np.asarray(test.targets))
    return out


def run_cnnkit(argv: list[str]) -> str:
    """Run `cnnkit argv` and return what it printed; a non-zero exit stops the benchmark with that output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cnnkit_main(argv)
    if code:
        raise SystemExit(f"cnnkit {' '.join(argv)} failed with {code}:\n{out.getvalue()}")
    return out.getvalue()
