"""`cnnkit demo`: from pixels to decisions on the built-in wafer maps, in a few minutes on a CPU.

It trains the zoo's compact CNN and a fully connected network with more parameters on the same
maps with the cnnkit trainer, and scores both on train, test and a shifted test whose loc and
scratch defects sit in the half of the wafer where training never showed them. The CNN's
weight sharing and translation equivariance, with global average pooling, let it recognise a
pattern anywhere; the MLP has a separate weight per pixel and must have seen a pattern at a
place (LeCun et al. 1998). `--engine numpy` trains the from-scratch NumPy engine's CNN instead,
on the same splits.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from cnnkit.data.dataset import ArrayImageDataset
from cnnkit.data.pipeline import Pipeline
from cnnkit.data.sources import DataSource
from cnnkit.data.wafer import IMBALANCES, MIN_SIZE, WAFER_CLASSES, WaferMaps
from cnnkit.device_info import torch_threads
from cnnkit.errors import CnnkitError
from cnnkit.train import model_setup, preprocessing
from cnnkit.train.config import TrainConfig
from cnnkit.train.data_prep import PreparedData
from cnnkit.train.demo_scores import ModelScores, SplitScores
from cnnkit.train.engine_demo import DemoConfig, demo_splits, describe_data, format_results, run_engine_demo_command
from cnnkit.train.fit import RunInfo, fit

# An MLP with more parameters than compact_cnn (538k): 1024 -> 640 -> 320 -> 9 has 864k.
MLP_HIDDEN = (640, 320)
SCORED_SPLITS = ("train", "test", "shifted")
# On the 2-core CI machine shared by other jobs, 1 thread ran a demo epoch 5x faster than torch's default 2.
DEMO_THREADS = 1


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


def prepared_wafer_data(splits: dict[str, WaferMaps]) -> PreparedData:
    """The trainer's view of the demo's train/val/test splits (grey levels 0, 128, 255)."""
    datasets = {name: ArrayImageDataset(splits[name].grey_levels(), splits[name].labels, list(WAFER_CLASSES))
                for name in ("train", "val", "test")}
    source = DataSource("wafer", "wafer", list(WAFER_CLASSES), dict(datasets))
    return PreparedData(source, dict(datasets), 1, list(WAFER_CLASSES))


def score_model(model: nn.Module, evaluation: Pipeline, splits: dict[str, WaferMaps]) -> dict[str, SplitScores]:
    """Eval-mode scores of `model` on the train, test and shifted splits; the maps are already at
    the model's input size, so only the eval pipeline's batch stage (Normalize) applies."""
    model.eval()
    scores = {}
    with torch.inference_mode():
        for name in SCORED_SPLITS:
            batch = evaluation.batch(torch.from_numpy(splits[name].grey_levels()))
            predictions = torch.cat([model(chunk) for chunk in batch.split(256)]).argmax(dim=1).numpy()
            scores[name] = SplitScores.of(predictions, splits[name].labels, len(WAFER_CLASSES))
    return scores


def run_torch_demo(config: DemoConfig, run_root: Path, *, quiet: bool = False) -> list[ModelScores]:
    """Train compact_cnn and the MLP on the demo splits (no augmentation: a flip would show
    both models the unseen half); returns each model's scores on train, test and the shifted test."""
    config.check()
    splits = demo_splits(config)
    data = prepared_wafer_data(splits)
    cnn = model_setup.build_model("compact_cnn", num_classes=len(WAFER_CLASSES), in_chans=1, seed=config.seed,
                                  img_size=config.size)
    cfg = cnn.default_cfg
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        mlp = build_mlp(config.size * config.size, len(WAFER_CLASSES))
    outcomes = []
    # (shown name, the run's model name: the zoo's, so `cnnkit predict/explain/export` load the kept run)
    for name, run_name, model in (("compact CNN", "compact_cnn", cnn), ("MLP", "demo_mlp", mlp)):
        parameters = sum(p.numel() for p in model.parameters())
        if not quiet:
            print(f"-- {name}: {parameters:,} parameters", flush=True)
        train_config = demo_train_config(config)
        bundle = preprocessing.data_bundle(data, cfg, train_config, "none")
        info = RunInfo(model_name=run_name, class_names=data.class_names, default_cfg=cfg)
        start = time.perf_counter()
        run_dir = run_root / run_name.removeprefix("demo_")
        fit(model, bundle, train_config, info, run_dir=run_dir, quiet=quiet)
        model.load_state_dict(load_file(run_dir / "best.safetensors"))
        _, evaluation = preprocessing.pipelines(cfg, "none")
        outcomes.append(ModelScores(name, parameters, score_model(model, evaluation, splits),
                                    time.perf_counter() - start))
    return outcomes


def _run_command(args: argparse.Namespace) -> int:
    config = DemoConfig(epochs=args.epochs, seed=args.seed, size=args.size, n_per_class=args.n_per_class,
                        imbalance=args.imbalance)
    if args.engine == "numpy":
        torch_only = [flag for flag, given in (("--compare-mlp", args.compare_mlp),
                                               ("--threads", args.threads is not None),
                                               ("--out", args.out is not None)) if given]
        if torch_only:
            raise CnnkitError(f"{', '.join(torch_only)} need --engine torch (the NumPy-engine demo trains its CNN "
                              "alone, writes no run directory and uses NumPy's threads: OMP_NUM_THREADS)")
        return run_engine_demo_command(config)
    config.check()
    threads = DEMO_THREADS if args.threads is None else args.threads
    if threads < 1:
        raise CnnkitError(f"--threads must be >= 1, got {threads}")
    if args.out is not None and not _can_hold_folders(Path(args.out)):
        raise CnnkitError(f"--out {args.out}: a file stands where the run folders would go; choose a folder")
    with torch_threads(threads):
        return _run_torch_command(config, args.out)


def _can_hold_folders(path: Path) -> bool:
    """Whether folders can be made at `path`: no existing file at it or at any of its parents."""
    return not any(part.exists() and not part.is_dir() for part in (path, *path.parents))


def _run_torch_command(config: DemoConfig, out: str | None) -> int:
    print(describe_data(config, "compact CNN vs MLP"))
    with tempfile.TemporaryDirectory(prefix="cnnkit-demo-") as scratch:
        run_root = Path(out) if out else Path(scratch)
        outcomes = run_torch_demo(config, run_root)
    cnn = outcomes[0]
    print(f"test accuracy: {cnn.splits['test'].accuracy:.4f}  (compact CNN, {cnn.parameters:,} parameters, "
          f"{sum(o.seconds for o in outcomes):.0f} s for both models)")
    print(format_results(outcomes))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cnnkit demo` to the CLI."""
    defaults = DemoConfig()
    parser = subparsers.add_parser("demo", help="train a CNN and an MLP on built-in wafer maps (no download)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="training epochs")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed for data, initialisation and shuffling")
    parser.add_argument("--size", type=int, default=defaults.size, help=f"wafer map side in pixels (>= {MIN_SIZE})")
    parser.add_argument("--n-per-class", type=int, default=defaults.n_per_class,
                        help="maps per class on average (9 x this in all)")
    parser.add_argument("--imbalance", choices=IMBALANCES, default=defaults.imbalance,
                        help="balanced classes (default) or WM-811K's labelled class frequencies")
    parser.add_argument("--engine", choices=("torch", "numpy"), default="torch",
                        help="torch: compact CNN and MLP with cnnkit's trainer (default); "
                             "numpy: the from-scratch engine's CNN")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default 1: the demo's small batches gain little from "
                             "more, and threads thrash on a shared machine)")
    parser.add_argument("--compare-mlp", action="store_true",
                        help="train the MLP beside the CNN (the issue's flag: the torch demo always does)")
    parser.add_argument("--out", default=None, help="keep the run directories here (default: a temporary folder)")
    parser.set_defaults(func=_run_command)
