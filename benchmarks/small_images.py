"""Small images trained from scratch: which input size, stem and batch size make resnet18 fast?

A new user's `cnnkit train fashion_mnist --model resnet18` once upsampled 28x28 digits to the
model's 224x224 (about 40 images/s on 2 cores). At 28x28 the ImageNet stem leaves layer4 on 1x1
maps, where PyTorch's CPU convolution backward is slow; the CIFAR stem (3x3/1, no max-pool)
avoids 1x1 maps but does 16x the first stage's work. This measures the training step time of each
option side by side (fp32, channels_last, the Trainer's own step), and, with --accuracy, trains
the chosen default on MNIST for the epochs given and reports test accuracy.

    python benchmarks/small_images.py [--steps 6] [--accuracy --epochs 3]

Last line: `small_images: <speed-up of the fastest option over 224 px> x`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import cnnkit
from cnnkit.device_info import device_info

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"
# (label, input size, stem): the options weighed.
OPTIONS = [
    ("224 px, ImageNet stem (the old default)", 224, "imagenet"),
    ("28 px, ImageNet stem (layer4 on 1x1)", 28, "imagenet"),
    ("32 px, ImageNet stem (layer4 on 1x1)", 32, "imagenet"),
    ("64 px, ImageNet stem (layer4 on 2x2)", 64, "imagenet"),
    ("28 px, CIFAR stem (3x3/1, no max-pool)", 28, "cifar"),
]


def step_seconds(size: int, stem: str, batch: int, steps: int) -> float:
    """Median seconds of a forward + backward + SGD step of resnet18 (1 channel, 10 classes)."""
    torch.manual_seed(0)
    model = cnnkit.create_model("resnet18", num_classes=10, in_chans=1, stem=stem).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step:  # the first step warms up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_default(epochs: int) -> float:
    """`cnnkit train MNIST --model resnet18 --epochs N` with cnnkit's defaults; test top-1."""
    from cnnkit.cli import main
    from cnnkit.train.run_summary import read_summary

    with tempfile.TemporaryDirectory(prefix="cnnkit-small-") as scratch:
        out = Path(scratch) / "run"
        code = main(["train", str(MNIST), "--model", "resnet18", "--epochs", str(epochs), "--out", str(out)])
        if code:
            sys.exit(code)
        return read_summary(out).test["test_top1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-sizes", default="64,128")
    parser.add_argument("--accuracy", action="store_true", help="also train the default on MNIST")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(device_info().describe())
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    rates: dict[tuple[str, int], float] = {}
    print(f"{'option':<42} {'batch':>5} {'step s':>7} {'img/s':>7} {'3 epochs of 60k':>16}")
    for label, size, stem in OPTIONS:
        for batch in batches:
            steps = 2 if size >= 224 else args.steps
            seconds = step_seconds(size, stem, batch, steps)
            rate = batch / seconds
            rates[(label, batch)] = rate
            print(f"{label:<42} {batch:>5} {seconds:>7.3f} {rate:>7.0f} {3 * 60000 / rate / 60:>13.1f} min",
                  flush=True)
    old = max(rates[(OPTIONS[0][0], b)] for b in batches)
    (label, batch), fastest = max(rates.items(), key=lambda item: item[1])
    print(f"fastest: {label}, batch {batch}")
    if args.accuracy and MNIST.is_dir():
        print(f"MNIST test top-1 of the default after {args.epochs} epochs: {100 * train_default(args.epochs):.2f}%")
    print(f"small_images: {fastest / old:.1f}x")


if __name__ == "__main__":
    main()
