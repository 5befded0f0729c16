"""`cnnkit demo`: from pixels to decisions on the built-in wafer maps, in a few minutes on a CPU.

By default it trains the zoo's compact CNN with the cnnkit trainer and prints the test accuracy
and a confusion table; `--compare-mlp` also trains a fully connected network with more
parameters on the same data: it fits the training set but generalises worse, because it has
neither weight sharing nor translation equivariance (LeCun et al. 1998). `--engine numpy` runs
the same story on the from-scratch NumPy engine instead of PyTorch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnkit.data.wafer import MIN_SIZE, WAFER_CLASSES
from cnnkit.errors import CnnkitError
from cnnkit.train import data_prep, model_setup, preprocessing
from cnnkit.train.config import TrainConfig
from cnnkit.train.engine_demo import DemoConfig, run_engine_demo_command
from cnnkit.train.fit import RunInfo, fit
from cnnkit.train.report import format_confusion

# An MLP with more parameters than compact_cnn (538k): 1024 -> 640 -> 320 -> 9 has 864k.
MLP_HIDDEN = (640, 320)


@dataclass(frozen=True)
class ModelOutcome:
    name: str
    parameters: int
    train_accuracy: float
    test_accuracy: float
    confusion: list[list[int]]
    seconds: float


def build_mlp(in_features: int, num_classes: int, hidden: tuple[int, ...] = MLP_HIDDEN) -> nn.Sequential:
    """(N, C, H, W) -> (N, num_classes): flatten, then fully connected layers with ReLU."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


def demo_train_config(config: DemoConfig) -> TrainConfig:
    return TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.learning_rate,
                       optimizer="adamw", weight_decay=0.05, warmup_epochs=1, seed=config.seed)


def run_torch_demo(config: DemoConfig, run_root: Path, *, compare_mlp: bool, quiet: bool = False) -> list[ModelOutcome]:
    """Train compact_cnn (and the MLP) on the same wafer split; returns one outcome per model."""
    data = data_prep.prepare_data("wafer", seed=config.seed, wafer_per_class=config.n_per_class, wafer_size=config.size)
    cnn = model_setup.build_model("compact_cnn", num_classes=len(data.class_names), in_chans=1, seed=config.seed)
    cfg = cnn.default_cfg
    candidates: list[tuple[str, nn.Module]] = [("compact CNN", cnn)]
    if compare_mlp:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            candidates.append(("MLP", build_mlp(config.size * config.size, len(data.class_names))))
    outcomes = []
    for name, model in candidates:
        if not quiet:
            print(f"-- {name}: {sum(p.numel() for p in model.parameters()):,} parameters")
        bundle = preprocessing.data_bundle(data, cfg, demo_train_config(config), "flip")
        info = RunInfo(model_name=name, class_names=data.class_names, default_cfg=cfg)
        start = time.perf_counter()
        run_dir = run_root / name.replace(" ", "_").lower()
        summary = fit(model, bundle, demo_train_config(config), info, run_dir=run_dir, quiet=quiet)
        outcomes.append(ModelOutcome(
            name=name, parameters=sum(p.numel() for p in model.parameters()),
            train_accuracy=summary.final["train_top1"], test_accuracy=summary.test["test_top1"],
            confusion=summary.test_confusion, seconds=time.perf_counter() - start,
        ))
    return outcomes


def format_comparison(outcomes: list[ModelOutcome]) -> str:
    """Parameters, train and test accuracy, and the generalisation gap of each model."""
    lines = [f"{'model':<12} {'parameters':>11} {'train acc':>10} {'test acc':>9} {'gap':>7}"]
    for o in outcomes:
        gap = o.train_accuracy - o.test_accuracy
        lines.append(f"{o.name:<12} {o.parameters:>11,} {100 * o.train_accuracy:>9.1f}% "
                     f"{100 * o.test_accuracy:>8.1f}% {100 * gap:>6.1f}")
    return "\n".join(lines)


def _run_command(args: argparse.Namespace) -> int:
    config = DemoConfig(epochs=args.epochs, seed=args.seed, size=args.size, n_per_class=args.n_per_class)
    if args.engine == "numpy":
        if args.compare_mlp:
            raise CnnkitError("--compare-mlp needs --engine torch")
        return run_engine_demo_command(config)
    if config.size < MIN_SIZE or config.epochs < 1 or config.n_per_class < 7:
        raise CnnkitError(f"need --size >= {MIN_SIZE}, --epochs >= 1 and --n-per-class >= 7")
    print(f"cnnkit demo: compact CNN on synthetic {config.size}x{config.size} wafer maps, "
          f"{len(WAFER_CLASSES)} classes x {config.n_per_class} maps (70/15/15 split), seed {config.seed}")
    with tempfile.TemporaryDirectory(prefix="cnnkit-demo-") as scratch:
        run_root = Path(args.out) if args.out else Path(scratch)
        outcomes = run_torch_demo(config, run_root, compare_mlp=args.compare_mlp)
    cnn = outcomes[0]
    print(f"test accuracy: {cnn.test_accuracy:.4f}  ({cnn.parameters:,} parameters, {cnn.seconds:.0f} s)")
    print("confusion on the test split (rows: true class, columns: predicted):")
    print(format_confusion(cnn.confusion, list(WAFER_CLASSES)))
    if args.compare_mlp:
        print("\nwhy convolution wins on images:")
        print(format_comparison(outcomes))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cnnkit demo` to the CLI."""
    defaults = DemoConfig()
    parser = subparsers.add_parser("demo", help="train a CNN on built-in wafer maps (no download)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="training epochs")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed for data, initialisation and shuffling")
    parser.add_argument("--size", type=int, default=defaults.size, help=f"wafer map side in dies (>= {MIN_SIZE})")
    parser.add_argument("--n-per-class", type=int, default=defaults.n_per_class, help="maps generated per class")
    parser.add_argument("--compare-mlp", action="store_true", help="also train a larger fully connected network")
    parser.add_argument("--engine", choices=("torch", "numpy"), default="torch",
                        help="torch: cnnkit's trainer (default); numpy: the from-scratch engine")
    parser.add_argument("--out", default=None, help="keep the run directories here (default: a temporary folder)")
    parser.set_defaults(func=_run_command)
