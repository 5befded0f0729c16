"""Deploy speed (issue 10): conv-BN folded vs unfolded (torch eager), ONNX Runtime fp32 vs torch eager
(channels_last), ONNX Runtime int8 (static QDQ) vs fp32, for resnet18, resnet50, mobilenet_v2 and
efficientnet_b0 at 224 px, batch 1 and 32, measured side by side in one process; then the int8
accuracy of a model trained briefly on MNIST (fp32 vs int8 top-1 on the 10,000 test images).

    PYTHONPATH=src:benchmarks python benchmarks/deploy_speed.py [--models resnet18,...] [--skip-accuracy]

Speed uses random weights (speed does not depend on the values); int8 is calibrated on random
inputs for the speed part. The CPU's instruction set is printed first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from cnnkit.deploy.bench import onnx_runner, torch_runner
from cnnkit.deploy.fold import fold_batchnorm
from cnnkit.deploy.onnx_export import write_onnx
from cnnkit.deploy.quantize import Int8Quantizer
from cnnkit.deploy.timing import time_side_by_side
from cnnkit.device_info import device_info
from cnnkit.models.factory import create_model

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"
# batch -> (rounds, seconds cap): each round times one call of every variant, so load changes on
# a shared machine hit all four alike; fewer rounds at batch 32, fewest for resnet50.
PLAN = {1: (15, 20.0), 32: (4, 60.0)}


def _speed(name: str, tmp: Path, threads: int) -> dict[str, dict[int, float]]:
    torch.manual_seed(0)
    model = create_model(name).eval()
    folded = fold_batchnorm(model)
    fp32 = write_onnx(model, tmp / f"{name}.onnx", model_name=name)
    generator = torch.Generator().manual_seed(0)
    calibration = [torch.randn((8, 3, 224, 224), generator=generator).numpy() for _ in range(4)]
    quantizer = Int8Quantizer(fp32, calibration, method="minmax", workdir=tmp)
    int8 = quantizer.quantize(tmp / f"{name}.int8.onnx")
    p50: dict[str, dict[int, float]] = {k: {} for k in ("torch", "folded", "onnx", "int8")}
    for batch, (repeats, cap) in PLAN.items():
        repeats = max(2, repeats // 2) if name == "resnet50" else repeats
        x = torch.randn((batch, 3, 224, 224), generator=generator)
        runs = {"torch": torch_runner(model, x), "folded": torch_runner(folded, x),
                "onnx": onnx_runner(fp32, x, threads=threads), "int8": onnx_runner(int8, x, threads=threads)}
        for key, timing in time_side_by_side(runs, batch=batch, repeats=repeats, max_seconds=cap).items():
            p50[key][batch] = timing.p50
    quantizer.close()
    return p50


def _accuracy(mnist: Path, tmp: Path) -> str:
    """Train mnist_cnn 2 epochs on 6,000 MNIST digits, then `cnnkit export --int8` on the test set."""
    sys.path.insert(0, str(Path(__file__).parent))
    from mnist_subset import run_cnnkit, write_mnist_subset

    data = write_mnist_subset(mnist, tmp / "mnist6k.npz", train_size=6000)
    run = tmp / "run"
    run_cnnkit(["train", str(data), "--model", "mnist_cnn", "--epochs", "2", "--batch-size", "64",
                "--out", str(run), "--quiet"])
    return run_cnnkit(["export", str(run), "--out", str(tmp / "mnist.onnx"), "--calibration", str(data),
                       "--int8", "--calibration-size", "512", "--max-drop", "1.0"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50,mobilenet_v2,efficientnet_b0")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--mnist", type=Path, default=MNIST, help=f"MNIST IDX folder (default {MNIST})")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of torch and ONNX Runtime alike (default 1: on an oversubscribed shared "
                             "CPU, 2-thread torch measured 8x slower than 1 thread, i.e. the scheduler)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = device_info()
    print(f"# deploy_speed  {time.strftime('%Y-%m-%d %H:%M')}  load average {os.getloadavg()}")
    print(f"# {info.describe()}")
    print(f"# threads: {args.threads} for torch and ONNX Runtime alike; variants timed side by side in rounds")
    print(f"# int8 kernels: {'VNNI' if info.vnni else 'no VNNI (AVX2/AVX-512 without dot-product instructions)'}")
    header = (f"{'model':<16} {'batch':>5} {'eager ms':>9} {'folded':>8} {'ort fp32':>9} {'ort int8':>9} "
              f"{'fold x':>7} {'ort/eager x':>11} {'int8/fp32 x':>11}")
    print(header)
    ratios: dict[str, float] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deploy-speed-") as tmp_name:
        tmp = Path(tmp_name)
        for name in filter(None, args.models.split(",")):
            p50 = _speed(name, tmp, args.threads)
            for batch in PLAN:
                t, f, o, q = (p50[k][batch] for k in ("torch", "folded", "onnx", "int8"))
                print(f"{name:<16} {batch:>5} {1e3 * t:>9.2f} {1e3 * f:>8.2f} {1e3 * o:>9.2f} {1e3 * q:>9.2f} "
                      f"{t / f:>7.2f} {t / o:>11.2f} {o / q:>11.2f}", flush=True)
                ratios[f"{name}_b{batch}"] = o / q
        print(f"# speed part: {time.perf_counter() - started:.0f} s")
        if not args.skip_accuracy and args.mnist.is_dir():
            print("# int8 accuracy: mnist_cnn, 2 epochs on 6,000 MNIST digits, 10,000 test digits")
            print(_accuracy(args.mnist, tmp).rstrip())
        elif not args.skip_accuracy:
            print(f"# int8 accuracy skipped: no MNIST at {args.mnist} (pass --mnist)")
    slower = [k for k, v in ratios.items() if v < 1.0]
    if slower:
        print(f"# int8 NOT faster than ONNX Runtime fp32 here for: {', '.join(slower)}")
    if ratios:
        key = "resnet50_b32" if "resnet50_b32" in ratios else next(iter(ratios))
        print(f"int8_speedup_{key}: {ratios[key]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
