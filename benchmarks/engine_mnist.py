"""Benchmark: LeNet-5 built from the NumPy engine, trained on MNIST; test accuracy and images/s.

LeNet-5 (LeCun et al. 1998) as usually reproduced: 32x32 input (MNIST's 28x28 zero-padded by 2),
conv5x5(6)-maxpool2-conv5x5(16)-maxpool2-fc120-fc84-fc10 with ReLU, trained with Adam. Target:
at least 98.5% test accuracy. Reads the gzip IDX files of ../shared/datasets/mnist itself.
Last line: `engine_mnist: <test accuracy>`.

    .venv/bin/python benchmarks/engine_mnist.py [--epochs 4] [--data ../shared/datasets/mnist]
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np

from cnnkit import engine as E
from cnnkit.engine.training import accuracy, predict_logits, train_epoch
from cnnkit.device_info import device_info

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# MNIST's training-set pixel mean and std (of x / 255), the usual normalisation.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
TARGET_ACCURACY = 0.985


def read_idx(path: Path) -> np.ndarray:
    """Parse a gzip IDX file: magic (0, 0, dtype code 0x08 = uint8, ndim), big-endian dims, data."""
    with gzip.open(path, "rb") as stream:
        raw = stream.read()
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path}: not a uint8 IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, 32, 32) float32 normalised images (padded by 2) and (N,) int64 labels."""
    image_file, label_file = FILES[split]
    images = read_idx(folder / image_file).astype(np.float32) / 255.0
    images = np.pad((images - MNIST_MEAN) / MNIST_STD, ((0, 0), (2, 2), (2, 2)), constant_values=-MNIST_MEAN / MNIST_STD)
    return np.ascontiguousarray(images[:, None], dtype=np.float32), read_idx(folder / label_file).astype(np.int64)


def lenet5(*, rng: np.random.Generator) -> E.Sequential:
    """(N, 1, 32, 32) -> (N, 10)."""
    return E.Sequential(
        E.Conv2d(1, 6, 5, rng=rng), E.ReLU(), E.MaxPool2d(2),
        E.Conv2d(6, 16, 5, rng=rng), E.ReLU(), E.MaxPool2d(2),
        E.Flatten(),
        E.Linear(16 * 5 * 5, 120, rng=rng), E.ReLU(),
        E.Linear(120, 84, rng=rng), E.ReLU(),
        E.Linear(84, 10, rng=rng),
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the MNIST gzip IDX files")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(device_info().describe(), flush=True)
    missing = [name for names in FILES.values() for name in names if not (args.data / name).is_file()]
    if missing:
        print(f"engine_mnist: MNIST not found: {args.data} lacks {', '.join(missing)}", file=sys.stderr)
        return 2

    train_images, train_labels = load_split(args.data, "train")
    test_images, test_labels = load_split(args.data, "test")
    rng = np.random.default_rng(args.seed)
    model = lenet5(rng=rng)
    optimizer = E.Adam(model.parameters(), lr=args.lr)
    print(f"LeNet-5 on the NumPy engine: {model.num_parameters()} parameters, {len(train_images)} training images, "
          f"Adam lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs")  # fmt: skip
    rates = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        stats = train_epoch(model, optimizer, train_images, train_labels, batch_size=args.batch_size, rng=rng)
        seconds = time.perf_counter() - start
        rates.append(len(train_images) / seconds)
        print(f"epoch {epoch}/{args.epochs}  train loss {stats.loss:.4f}  train acc {stats.accuracy:.4f}  "
              f"{seconds:.0f} s  {rates[-1]:.0f} images/s", flush=True)  # fmt: skip
    test_accuracy = accuracy(predict_logits(model, test_images), test_labels)
    verdict = "meets" if test_accuracy >= TARGET_ACCURACY else "MISSES"
    print(f"training speed: {np.median(rates):.0f} images/s (median over epochs; forward + backward + Adam)")
    print(f"test accuracy {test_accuracy:.4f} ({verdict} the {TARGET_ACCURACY:.1%} target)")
    print(f"engine_mnist: {test_accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
