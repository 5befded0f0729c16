"""Knowledge distillation on MNIST: a small student trained alone against the same student distilled
from a larger, well-trained teacher (Hinton et al. 2015), same data, epochs and recipe, errors on
the held-out test set.

Recipe (after Hinton et al. sec. 3): the teacher (`mnist_cnn`, 160k parameters) is trained with
`cnnkit train` on the training digits; the student (`lenet5`, 62k) is trained with `cnnkit distill`
on the same digits, once with `--alpha 0` ("alone": the loss is plain cross-entropy exactly, its
weights equal `cnnkit train`'s bit for bit, tests/deploy/test_distill.py) and once per temperature
with `--alpha 0.9` (soft targets carry 90% of the loss, T^2-scaled). Both students see the very
same batches; the teacher sees each student's batch as it is trained. Neither the teacher nor the
students see the 10,000 test digits before the end (no validation split: the checkpoint kept is
the epoch of lowest training loss). `--train-size 0` uses all 60,000 training digits, N > 0 a
class-balanced subset. The course's figure (Hinton et al., full MNIST, 784-800-800-10 MLPs, T = 20):
146 test errors alone vs 74 distilled.

    PYTHONPATH=src:benchmarks python benchmarks/distill_mnist.py [--train-size 0]
        [--teacher-epochs 3] [--student-epochs 8] [--temperatures 8,20] [--alpha 0.9]

Last line: `distill_mnist: <errors alone> -> <errors distilled at the first T> test errors ...` (the first
T listed is the headline, so that the test set does not pick it; the others follow it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from cnnkit.device_info import device_info
from cnnkit.inference import read_summary
from cnnkit.models.factory import create_model
from mnist_subset import run_cnnkit, write_mnist_subset

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"


def _errors(run: Path) -> tuple[int, int]:
    confusion = read_summary(run).test_confusion
    total = sum(sum(row) for row in confusion)
    correct = sum(confusion[k][k] for k in range(len(confusion)))
    return total - correct, total


def _parameters(name: str) -> int:
    return sum(p.numel() for p in create_model(name, num_classes=10, in_chans=1).parameters())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=MNIST)
    parser.add_argument("--train-size", type=int, default=0, help="0: all 60,000 training digits")
    parser.add_argument("--teacher", default="mnist_cnn")
    parser.add_argument("--student", default="lenet5")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--student-epochs", type=int, default=8)
    parser.add_argument("--temperatures", default="8,20", help="comma-separated: one distilled student per T")
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not args.mnist.is_dir():
        print(f"distill_mnist: MNIST not found at {args.mnist}; nothing to measure", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    temperatures = [float(t) for t in args.temperatures.split(",") if t.strip()]
    print(device_info().describe())
    print(f"load average {os.getloadavg()[0]:.2f} at the start, {torch.get_num_threads()} torch thread(s); "
          f"{args.train_size or 'all'} training digits, the 10,000 test digits held out", flush=True)
    recipe = ["--batch-size", "128", "--lr", str(args.lr), "--warmup-epochs", "0", "--seed", "0", "--quiet"]
    print(f"recipe: AdamW lr {args.lr:g}, cosine, batch 128, seed 0; teacher {args.teacher} "
          f"({_parameters(args.teacher):,} parameters) {args.teacher_epochs} epochs; student {args.student} "
          f"({_parameters(args.student):,}) {args.student_epochs} epochs; alpha {args.alpha:g}", flush=True)
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cnnkit-distill-") as scratch_name:
        scratch = Path(scratch_name)
        data = str(args.mnist) if args.train_size == 0 else str(
            write_mnist_subset(args.mnist, scratch / "mnist.npz", train_size=args.train_size))
        start = time.perf_counter()
        run_cnnkit(["train", data, "--model", args.teacher, "--epochs", str(args.teacher_epochs),
                     "--out", str(scratch / "teacher"), *recipe])
        teacher = _errors(scratch / "teacher")
        print(f"teacher {args.teacher}, {args.teacher_epochs} epochs: {teacher[0]} test errors of {teacher[1]} "
              f"({time.perf_counter() - start:.0f}s)", flush=True)
        runs = [("alone", 0.0, temperatures[0])] + [(f"distilled T={t:g}", args.alpha, t) for t in temperatures]
        results = {}
        for label, alpha, temperature in runs:
            start = time.perf_counter()
            out = scratch / label.replace(" ", "_").replace("=", "")
            run_cnnkit(["distill", str(scratch / "teacher"), data, "--student", args.student, "--alpha", str(alpha),
                         "--temperature", str(temperature), "--epochs", str(args.student_epochs),
                         "--out", str(out), *recipe])
            results[label] = _errors(out)
            print(f"student {args.student} {label:>15} (alpha {alpha:g}), {args.student_epochs} epochs: "
                  f"{results[label][0]} test errors of {results[label][1]} ({time.perf_counter() - start:.0f}s)",
                  flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end; {time.perf_counter() - started_all:.0f}s in all")
    alone = results.pop("alone")[0]
    first_label, (first, _) = next(iter(results.items()))
    others = "".join(f"; {label}: {errors}" for label, (errors, _) in list(results.items())[1:])
    print(f"distill_mnist: {alone} -> {first} test errors ({args.student} alone -> {first_label} from "
          f"{args.teacher} with {teacher[0]} errors, ratio {first / max(alone, 1):.2f}{others}; "
          f"course figure 146 -> 74)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
