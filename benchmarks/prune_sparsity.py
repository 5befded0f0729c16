"""Accuracy against sparsity: global magnitude pruning with and without rewinding, and L1 channel pruning.

On MNIST (a class-balanced training subset, the full 10,000-image test set; `mnist_cnn`) and the
built-in wafer maps (900 maps, 70/15/15 split; `compact_cnn`): a dense run, then for 50/80/90/95%
of conv+linear weights removed (one global magnitude threshold):
  - pruned only: the masked dense weights, no retraining;
  - fine-tuned: `cnnkit prune RUN DATA --sparsity s --epochs F` (mask held, from the trained weights);
  - rewound: survivors reset to their initial values and retrained for the dense budget with the
    mask held (one-shot lottery ticket, Frankle & Carbin 2019);
and `cnnkit prune --structured channels` removing 25/50% of the filters (Li et al. 2017), with the
measured parameter, MAC and torch-eager latency ratios. The course expects 80-90% sparsity to cost
little and accuracy to fall sharply above 95%. Last line: `prune_sparsity: <MNIST top-1 at 90%, fine-tuned>`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from cnnkit.deploy.compare import test_metrics
from cnnkit.deploy.from_run import open_run
from cnnkit.deploy.lottery import rewound_model
from cnnkit.deploy.masks import MaskHold, apply_masks, global_magnitude_masks
from cnnkit.device_info import device_info
from cnnkit.inference import RunSummary, read_summary
from cnnkit.train.fit import fit
from mnist_subset import run_cnnkit, write_mnist_subset

PROJECT_ROOT = Path(__file__).resolve().parents[1]


SPARSITIES = (0.5, 0.8, 0.9, 0.95)
CHANNEL_FRACTIONS = (0.25, 0.5)


def _train(data: str, model: str, out: Path, epochs: int, img_size: int, batch: int) -> float:
    run_cnnkit(["train", data, "--model", model, "--epochs", str(epochs), "--batch-size", str(batch),
                "--lr", "0.003", "--warmup-epochs", "0", "--img-size", str(img_size), "--seed", "0",
                "--out", str(out), "--quiet"])
    return read_summary(out).test["test_top1"]


def _prune(run: Path, data: str, out: Path, epochs: int, *extra: str) -> RunSummary:
    run_cnnkit(["prune", str(run), data, "--epochs", str(epochs), "--out", str(out), "--quiet", *extra])
    return read_summary(out)


def _rewound(run: Path, data: str, sparsity: float, out: Path) -> float:
    """Prune the trained weights, rewind the survivors to the run's initial weights, retrain as long."""
    source = open_run(run, data, out=out)
    masks = global_magnitude_masks(source.model, 1.0 - sparsity)
    ticket = rewound_model(source, source.fresh_model(source.config.seed).state_dict(), masks)
    summary = fit(ticket, source.bundle(source.config), source.config, source.info(), run_dir=out,
                  callbacks=[MaskHold(masks)], quiet=True)
    return summary.test["test_top1"]


def _pruned_only(run: Path, data: str, sparsity: float) -> float:
    source = open_run(run, data)
    apply_masks(source.model, global_magnitude_masks(source.model, 1.0 - sparsity))
    return test_metrics(source, device=torch.device("cpu"))[0]


def study(name: str, data: str, model: str, scratch: Path, *, epochs: int, finetune: int, img_size: int,
          batch: int) -> dict[float, float]:
    start = time.perf_counter()
    dense = scratch / f"{name}-dense"
    dense_top1 = _train(data, model, dense, epochs, img_size, batch)
    print(f"\n{name}: {model}, dense {epochs} epochs: test top-1 {100 * dense_top1:.2f}%")
    print(f"{'sparsity':>8}  {'pruned only':>11}  {f'fine-tuned {finetune} ep':>16}  {f'rewound, {epochs} ep':>15}")
    tuned_by_sparsity = {}
    for s in SPARSITIES:
        only = _pruned_only(dense, data, s)
        tuned = _prune(dense, data, scratch / f"{name}-ft{s}", finetune, "--sparsity", str(s))
        rewound = _rewound(dense, data, s, scratch / f"{name}-rw{s}")
        tuned_by_sparsity[s] = tuned.test["test_top1"]
        measured = tuned.global_sparsity
        print(f"{100 * measured:7.1f}%  {100 * only:10.2f}%  {100 * tuned_by_sparsity[s]:15.2f}%  "
              f"{100 * rewound:14.2f}%", flush=True)
    print(f"{'channels':>8}  {'params':>7}  {'MACs':>7}  {'p50 b1':>7}  {'img/s b32':>9}  {f'fine-tuned {finetune} ep':>16}")
    for f in CHANNEL_FRACTIONS:
        summary = _prune(dense, data, scratch / f"{name}-ch{f}", finetune, "--structured", "channels",
                         "--sparsity", str(f))
        before, after = summary.structured["before"], summary.structured["after"]
        ratio = {k: after[k] / before[k] for k in before}
        print(f"{100 * f:7.0f}%  {ratio['params']:6.2f}x  {ratio['macs']:6.2f}x  "
              f"{ratio['latency_p50_ms_batch1']:6.2f}x  {ratio['images_per_s_batch32']:8.2f}x  "
              f"{100 * summary.test['test_top1']:15.2f}%", flush=True)
    print(f"({name}: {time.perf_counter() - start:.0f}s)")
    return {0.0: dense_top1, **tuned_by_sparsity}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=PROJECT_ROOT.parent / "shared" / "datasets" / "mnist")
    parser.add_argument("--mnist-train", type=int, default=6000, help="MNIST training images used")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(device_info().describe())
    print(f"load average {os.getloadavg()[0]:.2f}, {torch.get_num_threads()} torch thread(s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="cnnkit-prune-") as scratch_name:
        scratch = Path(scratch_name)
        mnist = None
        if args.mnist.is_dir():
            subset = write_mnist_subset(args.mnist, scratch / "mnist.npz", train_size=args.mnist_train)
            mnist = study(f"mnist ({args.mnist_train} training images)", str(subset), "mnist_cnn", scratch,
                          epochs=3, finetune=1, img_size=28, batch=128)
        else:
            print(f"MNIST not found at {args.mnist}: skipped", file=sys.stderr)
        wafer = study("wafer", "wafer", "compact_cnn", scratch, epochs=8, finetune=2, img_size=32, batch=32)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if mnist is not None:
        print(f"prune_sparsity: {100 * mnist[0.9]:.2f} (MNIST top-1 % at 90% sparsity fine-tuned; dense "
              f"{100 * mnist[0.0]:.2f}, 95%: {100 * mnist[0.95]:.2f})")
    else:
        print(f"prune_sparsity: {100 * wafer[0.9]:.2f} (wafer top-1 % at 90% sparsity fine-tuned; dense "
              f"{100 * wafer[0.0]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
