"""Knowledge distillation on MNIST: a small student trained alone against the same student distilled
from a larger teacher (Hinton et al. 2015), same data, epochs and recipe, errors on the held-out test set.

Teacher: `compact_cnn` (539k parameters) trained with `cnnkit train`. Student: `lenet5` (62k).
"Alone" is `cnnkit distill --alpha 0`, whose loss is plain cross-entropy exactly (its weights equal
`cnnkit train`'s bit for bit: tests/deploy/test_distill.py), so both students see the very same
batches and preprocessing; "distilled" is `--temperature 4 --alpha 0.9`. Training uses a
class-balanced subset of MNIST's training images (see --train-size); the 10,000 test images are
used once, at the end. The course's figure (Hinton et al., full MNIST, large MLPs): 146 test errors
alone vs 74 distilled. Last line: `distill_mnist: <errors alone> -> <errors distilled>`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from cnnkit.cli import main as _cli
from cnnkit.device_info import device_info
from cnnkit.inference import read_summary
from mnist_subset import write_mnist_subset

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def cnnkit_main(argv: list[str]) -> int:
    """`cnnkit ...` in-process, its per-run report kept off this benchmark's output."""
    with contextlib.redirect_stdout(io.StringIO()):
        return _cli(argv)


def _errors(run: Path) -> tuple[int, int]:
    confusion = read_summary(run).test_confusion
    total = sum(sum(row) for row in confusion)
    correct = sum(confusion[k][k] for k in range(len(confusion)))
    return total - correct, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=PROJECT_ROOT.parent / "shared" / "datasets" / "mnist")
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--student-epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not args.mnist.is_dir():
        print(f"distill_mnist: MNIST not found at {args.mnist}; nothing to measure", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    print(device_info().describe())
    print(f"load average {os.getloadavg()[0]:.2f}, {torch.get_num_threads()} torch thread(s); "
          f"{args.train_size} training images, full test set", flush=True)
    recipe = ["--batch-size", "128", "--lr", "0.003", "--warmup-epochs", "0", "--seed", "0", "--quiet"]
    with tempfile.TemporaryDirectory(prefix="cnnkit-distill-") as scratch_name:
        scratch = Path(scratch_name)
        data = str(write_mnist_subset(args.mnist, scratch / "mnist.npz", train_size=args.train_size))
        start = time.perf_counter()
        assert cnnkit_main(["train", data, "--model", "compact_cnn", "--img-size", "28", "--epochs",
                            str(args.teacher_epochs), "--out", str(scratch / "teacher"), *recipe]) == 0
        teacher = _errors(scratch / "teacher")
        print(f"teacher compact_cnn, {args.teacher_epochs} epochs: {teacher[0]} test errors of {teacher[1]} "
              f"({time.perf_counter() - start:.0f}s)", flush=True)
        results = {}
        for label, alpha in (("alone", "0"), ("distilled", "0.9")):
            start = time.perf_counter()
            assert cnnkit_main(["distill", str(scratch / "teacher"), data, "--student", "lenet5", "--alpha", alpha,
                                "--temperature", "4", "--epochs", str(args.student_epochs),
                                "--out", str(scratch / label), *recipe]) == 0
            results[label] = _errors(scratch / label)
            print(f"student lenet5 {label:>9} (alpha {alpha}, T 4), {args.student_epochs} epochs: "
                  f"{results[label][0]} test errors of {results[label][1]} ({time.perf_counter() - start:.0f}s)",
                  flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    alone, distilled = results["alone"][0], results["distilled"][0]
    print(f"distill_mnist: {alone} -> {distilled} test errors (lenet5 alone -> distilled from compact_cnn; "
          f"ratio {distilled / max(alone, 1):.2f}; course figure 146 -> 74)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
