"""`cnnkit demo --engine numpy`: a small CNN built from the NumPy engine on the built-in wafer maps.

No download, no GPU, no torch: from pixels to a confusion table on two CPU cores, on exactly the
splits of the torch demo (`demo_splits`), shifted control included. `run_demo` returns the
numbers; `format_*` and `cnnkit.train.demo_scores` do the printing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cnnkit import engine as E
from cnnkit.data.wafer import IMBALANCES, MIN_SIZE, PLACEABLE_CLASSES, WAFER_CLASSES, Imbalance, WaferMaps, wafer_splits
from cnnkit.engine.training import accuracy, predict_logits, train_epoch
from cnnkit.errors import CnnkitError
from cnnkit.train.demo_scores import (ModelScores, SplitScores, format_recall_table,
                                      format_side_by_side)
from cnnkit.train.report import format_confusion

# Channels of the conv-BN-ReLU stages; each but the last ends in 2x2 max pooling.
DEMO_CHANNELS = (16, 32, 64, 64)


@dataclass(frozen=True)
class DemoConfig:
    """Settings of one demo run (both engines); `n_per_class` maps per class on average
    (9 * n_per_class in all), spread over the classes by `imbalance`."""

    epochs: int = 6
    seed: int = 0
    size: int = 32
    n_per_class: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-3
    imbalance: Imbalance = "balanced"

    def check(self) -> None:
        """CnnkitError naming the first unusable setting."""
        if self.epochs < 1:
            raise CnnkitError(f"--epochs must be >= 1, got {self.epochs}")
        if self.size < MIN_SIZE:
            raise CnnkitError(f"--size must be >= {MIN_SIZE}, got {self.size}")
        if self.imbalance not in IMBALANCES:
            raise CnnkitError(f"--imbalance must be one of {', '.join(IMBALANCES)}, got {self.imbalance!r}")
        least = 7 if self.imbalance == "balanced" else 12
        if self.n_per_class < least:
            raise CnnkitError(f"--n-per-class must be >= {least} (for a 70/15/15 split of every class), "
                              f"got {self.n_per_class}")


def demo_splits(config: DemoConfig) -> dict[str, WaferMaps]:
    """train/val/test with loc and scratch defects in the wafer's left half, and "shifted" (the
    test's class counts) with them in the right half: the control both demos score."""
    return wafer_splits(config.n_per_class, config.size, seed=config.seed, imbalance=config.imbalance,
                        shift_control=True)


MOVED_CLASSES: tuple[int, ...] = tuple(WAFER_CLASSES.index(name) for name in PLACEABLE_CLASSES)


@dataclass(frozen=True)
class EpochRecord:
    """Training loss and accuracy (on the fly, training mode) and validation accuracy after one epoch."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True)
class DemoResult:
    """Per-epoch history, test accuracy and the test confusion matrix (rows: true, cols: predicted),
    and `scores` on train, test and the shifted test."""

    history: tuple[EpochRecord, ...]
    test_accuracy: float
    confusion: np.ndarray
    class_names: tuple[str, ...]
    num_parameters: int
    scores: ModelScores


def build_demo_cnn(num_classes: int, *, rng: np.random.Generator) -> E.Sequential:
    """(N, 1, H, W) -> (N, num_classes): conv-BN-ReLU stages with max pooling, GAP, linear."""
    layers: list[E.Module] = []
    in_channels = 1
    for index, channels in enumerate(DEMO_CHANNELS):
        layers += [E.Conv2d(in_channels, channels, 3, padding=1, bias=False, rng=rng), E.BatchNorm2d(channels), E.ReLU()]
        if index < len(DEMO_CHANNELS) - 1:
            layers.append(E.MaxPool2d(2))
        in_channels = channels
    layers += [E.GlobalAvgPool2d(), E.Linear(in_channels, num_classes, rng=rng)]
    return E.Sequential(*layers)


def cosine_learning_rate(base: float, epoch: int, epochs: int) -> float:
    """Cosine decay from `base` at epoch 1 towards 0 (Loshchilov & Hutter 2017, SGDR without restarts).

    The small final steps settle the weights and the batch-norm running statistics.
    """
    return base * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))


def run_demo(config: DemoConfig, *, on_epoch: Callable[[EpochRecord], None] | None = None) -> DemoResult:
    """Make the demo splits, train the engine CNN with Adam, and score it on train, test and shifted."""
    config.check()
    start_all = time.perf_counter()
    splits = demo_splits(config)
    images = {name: split.images(np.float32) for name, split in splits.items()}
    rng = np.random.default_rng(config.seed)
    model = build_demo_cnn(len(WAFER_CLASSES), rng=rng)
    optimizer = E.Adam(model.parameters(), lr=config.learning_rate)
    history = []
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        optimizer.lr = cosine_learning_rate(config.learning_rate, epoch, config.epochs)
        stats = train_epoch(model, optimizer, images["train"], splits["train"].labels, batch_size=config.batch_size, rng=rng)
        val_accuracy = accuracy(predict_logits(model, images["val"]), splits["val"].labels)
        record = EpochRecord(epoch, stats.loss, stats.accuracy, val_accuracy, time.perf_counter() - start)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    scores = {name: SplitScores.of(predict_logits(model, images[name]).argmax(axis=1), splits[name].labels,
                                   len(WAFER_CLASSES))
              for name in ("train", "test", "shifted")}
    return DemoResult(
        history=tuple(history),
        test_accuracy=scores["test"].accuracy,
        confusion=scores["test"].confusion,
        class_names=WAFER_CLASSES,
        num_parameters=model.num_parameters(),
        scores=ModelScores("engine CNN", model.num_parameters(), scores, time.perf_counter() - start_all),
    )


def format_epoch(record: EpochRecord, epochs: int) -> str:
    """One progress line: epoch, training loss and accuracy, validation accuracy, seconds."""
    return (
        f"epoch {record.epoch:>2}/{epochs}  train loss {record.train_loss:.4f}  "
        f"train acc {record.train_accuracy:.3f}  val acc {record.val_accuracy:.3f}  ({record.seconds:.1f} s)"
    )


def describe_data(config: DemoConfig, model: str) -> str:
    """The demo's header line: model, data, split and the shifted control."""
    return (f"cnnkit demo: {model} on synthetic {config.size}x{config.size} wafer maps, {len(WAFER_CLASSES)} classes, "
            f"{len(WAFER_CLASSES) * config.n_per_class} maps ({config.imbalance}; 70/15/15 split), seed {config.seed}; "
            f"loc and scratch defects in the left half in training, in the right half in the shifted test")


def format_results(models: list[ModelScores]) -> str:
    """The side-by-side table, per-class recall, and the confusion tables on test and shifted test."""
    parts = ["\nscores (train and test in distribution; shifted: loc and scratch moved to the unseen half):",
             format_side_by_side(models, MOVED_CLASSES, WAFER_CLASSES),
             "\nper-class recall:", format_recall_table(models, WAFER_CLASSES)]
    for split in ("test", "shifted"):
        for model in models:
            parts += [f"\nconfusion of {model.name} on the {'shifted test' if split == 'shifted' else 'test split'} "
                      "(rows: true class, columns: predicted):",
                      format_confusion(model.splits[split].confusion.tolist(), list(WAFER_CLASSES))]
    return "\n".join(parts)


def run_engine_demo_command(config: DemoConfig) -> int:
    """Print the engine demo's progress, then its scores on train, test and the shifted test."""
    config.check()
    print(describe_data(config, "NumPy-engine CNN"))
    result = run_demo(config, on_epoch=lambda record: print(format_epoch(record, config.epochs), flush=True))
    print(f"test accuracy: {result.test_accuracy:.4f}  ({result.num_parameters} parameters, "
          f"{result.scores.seconds:.0f} s)")
    print(format_results([result.scores]))
    return 0
