"""Training throughput of cnnkit's trainer vs a minimal hand-written PyTorch loop, same work.

Both sides train `mnist_cnn` (1x28x28, batch 128, AdamW lr 1e-3 weight decay 0, constant LR)
from the same initial weights on the same uint8 images (MNIST train when present, else random
bytes of the same shape: the speed does not depend on the pixels), shuffled, one pass.
Hand loop: a plain DataLoader over a TensorDataset of the uint8 tensors; per batch
uint8 -> float + Normalize, forward, cross-entropy, backward, AdamW step; nothing else.
cnnkit: `fit` (what `cnnkit train` runs: seeded per-sample pipeline, batch Normalize, metrics,
CSV/TensorBoard logging, deterministic algorithms) with no validation and no mid-epoch
checkpoints; the end-of-epoch checkpoint and summary are excluded (timing stops at the last
step). Each measurement takes the median step time after `--warmup` untimed steps; the two
sides take turns (ABAB...) and the medians of the measurements are compared, so load from
other processes hits both alike.
Images per CPU second (this process's CPU time) are shown too: with one thread it is the
figure least disturbed by a shared machine. Then images/s of cnnkit's trainer in fp32 vs bf16
autocast and NCHW vs channels_last. Last line `trainer_overhead: <cnnkit / hand loop>x`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnnkit.data.dataset import ArrayImageDataset
from cnnkit.data.sources import open_source
from cnnkit.train import model_setup, preprocessing
from cnnkit.train.callbacks import Callback
from cnnkit.train.config import TrainConfig
from cnnkit.train.fit import DataBundle, RunInfo, fit
from cnnkit.train.trainer import Trainer
from cnnkit.device_info import device_info

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MNIST = PROJECT_ROOT.parent / "shared" / "datasets" / "mnist"
MODEL = "mnist_cnn"
CLASSES = 10


@dataclass(frozen=True)
class Rate:
    """Throughput of one measurement: images per wall second and per CPU second of this process."""

    wall: float
    cpu: float


class StepClock:
    """Wall and CPU timestamps at the end of each training step."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def tick(self) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def rate(self, batch_size: int, warmup: int) -> Rate:
        """Images/s from the median time of the steps after the first `warmup`: a step that another
        process delayed does not count, while costs paid every step (data loading, metrics,
        logging) all do."""
        timed = slice(warmup - 1, None)
        return Rate(batch_size / _median_step(self.wall[timed]), batch_size / _median_step(self.cpu[timed]))


def _median_step(ticks: list[float]) -> float:
    return statistics.median(later - earlier for earlier, later in zip(ticks, ticks[1:]))


class ClockCallback(Callback):
    """Ticks a StepClock after every batch of a cnnkit `Trainer`."""

    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def after_batch(self, trainer: Trainer) -> None:
        self.clock.tick()


def load_images(count: int) -> tuple[ArrayImageDataset, str]:
    """`count` uint8 (1, 28, 28) images with labels: MNIST train when present, else random bytes."""
    if MNIST.is_dir():
        train = open_source(MNIST).dataset("train")
        picked = np.stack([train.load(i)[0].numpy() for i in range(count)])
        return ArrayImageDataset(picked, train.targets[:count], train.classes), f"MNIST train[:{count}]"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, 1, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, size=count)
    return ArrayImageDataset(images, labels, [str(c) for c in range(CLASSES)]), f"{count} random images"


def hand_loop(model: nn.Module, dataset: ArrayImageDataset, *, batch_size: int, mean: float, std: float,
              seed: int) -> StepClock:
    """The minimal loop: DataLoader, Normalize, forward, cross-entropy, backward, AdamW step."""
    images = torch.from_numpy(dataset.images)
    loader = DataLoader(TensorDataset(images, torch.tensor(dataset.targets)), batch_size=batch_size, shuffle=True,
                        drop_last=True, generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    model.train()
    clock = StepClock()
    for batch, targets in loader:
        inputs = batch.float().div_(255.0).sub_(mean).div_(std)
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        clock.tick()
    return clock


def cnnkit_loop(model: nn.Module, dataset: ArrayImageDataset, config: TrainConfig) -> StepClock:
    """One epoch through `fit`, as `cnnkit train` builds it (pipelines from the model's cfg)."""
    augment, cfg = preprocessing.resolve_augment(model.default_cfg, None)
    train, _ = preprocessing.pipelines(cfg, augment)
    bundle = DataBundle(train=dataset, train_transform=train.sample,
                        batch_transform=preprocessing.batch_stage(train, config, CLASSES))
    info = RunInfo(model_name=MODEL, class_names=dataset.classes, default_cfg=cfg)
    clock = StepClock()
    with tempfile.TemporaryDirectory(prefix="cnnkit-overhead-") as scratch:
        fit(model, bundle, config, info, run_dir=Path(scratch) / "run", callbacks=[ClockCallback(clock)], quiet=True)
    return clock


def measure_overhead(model: nn.Module, dataset: ArrayImageDataset, config: TrainConfig, *, reps: int,
                     warmup: int) -> dict[str, list[Rate]]:
    """`reps` measurements of each side, taking turns; each starts from a copy of `model`."""
    mean, std = model.default_cfg.mean[0], model.default_cfg.std[0]
    rates: dict[str, list[Rate]] = {"hand loop": [], "cnnkit": []}
    for _ in range(reps):
        clock = hand_loop(copy.deepcopy(model), dataset, batch_size=config.batch_size, mean=mean, std=std,
                          seed=config.seed)
        rates["hand loop"].append(clock.rate(config.batch_size, warmup))
        clock = cnnkit_loop(copy.deepcopy(model), dataset, config)
        rates["cnnkit"].append(clock.rate(config.batch_size, warmup))
    return rates


def measure_variants(model: nn.Module, dataset: ArrayImageDataset, config: TrainConfig, *, reps: int,
                     warmup: int) -> dict[tuple[str, str], list[Rate]]:
    """cnnkit's trainer in {fp32, bf16 autocast} x {NCHW, channels_last}, taking turns."""
    variants = [(precision, layout) for precision in ("fp32", "bf16") for layout in ("NCHW", "channels_last")]
    rates: dict[tuple[str, str], list[Rate]] = {variant: [] for variant in variants}
    for _ in range(reps):
        for precision, layout in variants:
            variant_config = config.replace(precision=precision, channels_last=layout == "channels_last")
            clock = cnnkit_loop(copy.deepcopy(model), dataset, variant_config)
            rates[(precision, layout)].append(clock.rate(config.batch_size, warmup))
    return rates


def median_rate(rates: list[Rate]) -> Rate:
    return Rate(statistics.median(r.wall for r in rates), statistics.median(r.cpu for r in rates))


def format_rates(rows: dict[str, list[Rate]], reference: str) -> str:
    """One row per measured thing: each run's images/s, the medians, and the ratio to `reference`."""
    base = median_rate(rows[reference])
    width = max(len(name) for name in rows)
    lines = [f"{'':<{width}}  {'runs (img/s, wall)':<26}  {'median img/s':>12}  {'img/CPU-s':>9}  "
             f"{'ratio wall':>10}  {'ratio CPU':>9}"]
    for name, rates in rows.items():
        median = median_rate(rates)
        runs = " ".join(f"{r.wall:.0f}" for r in rates)
        lines.append(f"{name:<{width}}  {runs:<26}  {median.wall:>12.0f}  {median.cpu:>9.0f}  "
                     f"{median.wall / base.wall:>9.2f}x  {median.cpu / base.cpu:>8.2f}x")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each measurement")
    parser.add_argument("--reps", type=int, default=4, help="measurements per side for the overhead ratio")
    parser.add_argument("--variant-reps", type=int, default=2, help="measurements per precision/layout variant")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: on a shared CPU more threads than free cores "
                             "make every step wait)")
    args = parser.parse_args()
    print(device_info().describe(), flush=True)
    if min(args.warmup, args.steps, args.reps, args.variant_reps) < 1:
        parser.error("--warmup, --steps, --reps and --variant-reps must be >= 1")
    torch.set_num_threads(args.threads)
    dataset, origin = load_images((args.steps + args.warmup) * args.batch_size)
    torch.manual_seed(0)
    model = model_setup.build_model(MODEL, num_classes=CLASSES, in_chans=1, seed=0)
    config = TrainConfig(epochs=1, batch_size=args.batch_size, lr=1e-3, optimizer="adamw", weight_decay=0.0,
                         schedule="constant", seed=0, channels_last=False)  # as the hand loop: NCHW fp32
    print(f"{MODEL} on {origin}, batch {args.batch_size}, {args.steps} timed + {args.warmup} warm-up steps, "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    overhead = measure_overhead(model, dataset, config, reps=args.reps, warmup=args.warmup)
    print(format_rates(overhead, "hand loop"), flush=True)
    variants = measure_variants(model, dataset, config, reps=args.variant_reps, warmup=args.warmup)
    print("\ncnnkit trainer, precision x memory format:")
    print(format_rates({f"{p} {layout}": rates for (p, layout), rates in variants.items()}, "fp32 NCHW"))
    ratio = median_rate(overhead["cnnkit"]).wall / median_rate(overhead["hand loop"]).wall
    print(f"trainer_overhead: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
