"""INT8 accuracy on trained ResNets (issue 10, section 3): resnet18 and resnet50 trained briefly on
MNIST at its own small size, then `cnnkit export RUN --int8 --calibration DATA --max-drop 1.0` on
each: fp32 vs int8 top-1 on the 10,000 test digits, agreement, layers kept in float, size, and
ONNX Runtime latency at batch 1 and 32 at the trained input size, side by side.

    PYTHONPATH=src:benchmarks python benchmarks/int8_accuracy.py [--models resnet18,resnet50]
        [--train-size 10000] [--epochs 1] [--tight-drop 0.05] [--methods minmax,entropy,percentile]

Training goes through `cnnkit train` on a class-balanced subset of the training digits
(`mnist_subset.py`); calibration uses the run's training split, evaluation the full test set.
With --tight-drop D, each model is also exported with `--max-drop D`, which shows the accuracy
budget keeping the most sensitive layers in float when all-int8 loses more than D points (with the
first of --methods). Each of --methods (calibration: minmax, entropy, percentile) is exported from
the same trained run. Last line: `int8_accuracy: <largest drop at --max-drop 1.0> points (...)`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from cnnkit.device_info import device_info
from cnnkit.inference import read_summary
from mnist_subset import run_cnnkit, write_mnist_subset

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"
LATENCY = re.compile(r"batch\s+(\d+): fp32 p50 ([\d.]+) ms(?:\s+int8 p50 ([\d.]+) ms)?")


def _export(run: Path, data: Path, onnx: Path, max_drop: float, threads: int, method: str) -> dict:
    """`cnnkit export --int8` on a trained run; the figures from its summary and its report."""
    started = time.perf_counter()
    report = run_cnnkit(["export", str(run), "--out", str(onnx), "--calibration", str(data), "--int8",
                     "--calibration-size", "512", "--max-drop", str(max_drop), "--threads", str(threads),
                     "--method", method])
    int8 = read_summary(run).int8
    int8_path = onnx.with_name(onnx.stem + ".int8.onnx")
    latency = {int(m[1]): (float(m[2]), float(m[3]) if m[3] else None) for m in LATENCY.finditer(report)}
    return {"report": report, "seconds": time.perf_counter() - started, "fp32_top1": int8["fp32_top1"],
            "int8_top1": int8["int8_top1"], "agreement": int8["agreement"], "kept_float": int8["kept_float"],
            "fp32_mb": onnx.stat().st_size / 1e6,
            "int8_mb": int8_path.stat().st_size / 1e6 if int8_path.is_file() else None, "latency": latency}


def _row(model: str, size: int, method: str, max_drop: float, r: dict) -> str:
    drop = 100 * (r["fp32_top1"] - r["int8_top1"])
    kept = ", ".join(r["kept_float"]) or "none"
    int8_mb = f"{r['int8_mb']:.2f}" if r["int8_mb"] is not None else "fp32 kept"
    cells = [f"{model} {size}px", method, f"{max_drop:g}", f"{100 * r['fp32_top1']:.2f}", f"{100 * r['int8_top1']:.2f}",
             f"{drop:.2f}", f"{100 * r['agreement']:.2f}", f"{r['fp32_mb']:.2f} / {int8_mb}"]
    for batch in (1, 32):
        fp32, int8 = r["latency"].get(batch, (float("nan"), None))
        cells.append(f"{fp32:.2f} / {int8:.2f} ({fp32 / int8:.2f}x)" if int8 else f"{fp32:.2f} / -")
    return "| " + " | ".join(cells) + f" | {kept} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=MNIST)
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--tight-drop", type=float, default=None,
                        help="also export with this --max-drop, to show the budget keeping layers in float")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default 1)")
    parser.add_argument("--methods", default="minmax", help="calibration methods, comma-separated (default minmax)")
    args = parser.parse_args()
    if not args.mnist.is_dir():
        print(f"int8_accuracy: MNIST not found at {args.mnist}; nothing to measure", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    info = device_info()
    print(f"# int8_accuracy  {time.strftime('%Y-%m-%d %H:%M')}  load average {os.getloadavg()}")
    print(f"# {info.describe()}")
    print(f"# int8 kernels: {'VNNI' if info.vnni else 'no VNNI'}; {args.train_size} training digits, "
          f"{args.epochs} epoch(s), full test set; {args.threads} thread(s)", flush=True)
    recipe = ["--epochs", str(args.epochs), "--batch-size", "128", "--lr", "0.003", "--warmup-epochs", "0",
              "--seed", "0", "--quiet"]
    rows, drops = [], {}
    with tempfile.TemporaryDirectory(prefix="int8-accuracy-") as tmp_name:
        tmp = Path(tmp_name)
        data = write_mnist_subset(args.mnist, tmp / "mnist.npz", train_size=args.train_size)
        for model in filter(None, args.models.split(",")):
            run = tmp / model
            started = time.perf_counter()
            run_cnnkit(["train", str(data), "--model", model, "--out", str(run), *recipe])
            size = read_summary(run).default_cfg.input_size[-1]
            print(f"## {model}: trained at {size} px in {time.perf_counter() - started:.0f} s "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
            methods = [m for m in args.methods.split(",") if m]
            tight = [(methods[0], args.tight_drop)] if args.tight_drop is not None else []
            for method, max_drop in [(m, 1.0) for m in methods] + tight:
                result = _export(run, data, tmp / f"{model}-{method}-{max_drop:g}.onnx", max_drop, args.threads,
                                 method)
                print(f"### cnnkit export --int8 --method {method} --max-drop {max_drop:g} "
                      f"({result['seconds']:.0f} s)")
                print(result["report"].rstrip(), flush=True)
                rows.append(_row(model, size, method, max_drop, result))
                if max_drop == 1.0:
                    drops[f"{model} {method}"] = result
    print("| model | --method | --max-drop | fp32 top-1 % | int8 top-1 % | drop (points) | agreement % | MB fp32 / int8 | "
          "batch 1 ms fp32 / int8 | batch 32 ms fp32 / int8 | kept in float |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"# load average at the end {os.getloadavg()}")
    worst = max(drops, key=lambda m: drops[m]["fp32_top1"] - drops[m]["int8_top1"])
    parts = [f"{m}: {100 * r['fp32_top1']:.2f} -> {100 * r['int8_top1']:.2f}" for m, r in drops.items()]
    worst_drop = 100 * (drops[worst]["fp32_top1"] - drops[worst]["int8_top1"])
    print(f"int8_accuracy: {worst_drop:.2f} points ({'; '.join(parts)} % top-1 at --max-drop 1.0; target <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
