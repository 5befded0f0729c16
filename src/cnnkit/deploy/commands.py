"""`cnnkit export` (checked ONNX, optional accuracy-checked INT8) and `cnnkit bench` (speed tables)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnkit.data.commands import positive_int


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated batch sizes such as 1,32, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return sizes


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="export a run to ONNX (checked against ONNX Runtime), optionally INT8")
    export.add_argument("run", help="run directory")
    export.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--calibration", default=None, metavar="DATA",
                        help="the run's dataset (path or `wafer`): real test images for the check; with --int8 "
                             "its training split calibrates and its test split evaluates")
    export.add_argument("--int8", action="store_true", help="also write OUT.int8.onnx (static QDQ quantization)")
    export.add_argument("--calibration-size", type=positive_int, default=512, help="calibration images (512)")
    export.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                        help="activation range calibration (minmax)")
    export.add_argument("--max-drop", type=float, default=1.0,
                        help="largest top-1 loss in points before layers are kept in float (1.0)")
    export.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    export.add_argument("--fixed-batch", action="store_true", help="export for batch 1 only (default: any batch)")
    export.add_argument("--threads", type=positive_int, default=None, help="ONNX Runtime threads (default: all)")
    export.add_argument("--seed", type=int, default=0, help="seed of the calibration sample and random inputs")
    export.set_defaults(func=run_export)

    bench = subparsers.add_parser("bench", help="latency and throughput per backend (torch, onnx, int8)")
    bench.add_argument("targets", nargs="+", help="zoo model names, run directories or .onnx files")
    bench.add_argument("--batch-sizes", type=_sizes, default=(1, 32), help="comma-separated (default 1,32)")
    bench.add_argument("--img-size", type=positive_int, default=None, help="input size (default: the model's)")
    bench.add_argument("--backends", default="torch,onnx,int8", help="comma-separated of torch,onnx,int8")
    bench.add_argument("--repeats", type=positive_int, default=20, help="timed calls per cell (default 20)")
    bench.add_argument("--threads", type=positive_int, default=None, help="threads for every backend (default: torch's)")
    bench.add_argument("--csv", default="bench.csv", help="CSV file to write (default bench.csv)")
    bench.add_argument("--json", action="store_true", help="print JSON instead of the table")
    bench.set_defaults(func=run_bench)


def run_export(args: argparse.Namespace) -> int:
    from cnnkit.deploy.export_run import export_checked, export_int8, format_int8_report, record_export
    from cnnkit.deploy.from_run import open_run
    from cnnkit.deploy.run_images import split_batches, test_split
    from cnnkit.errors import CnnkitError
    from cnnkit.inference import load_run

    out = Path(args.out)
    if out.suffix != ".onnx":
        raise CnnkitError(f"--out must name an .onnx file, got {out}")
    if args.int8 and args.calibration is None:
        raise CnnkitError("--int8 needs --calibration DATA (the run's dataset: training images calibrate, "
                          "test images measure the accuracy)")
    if not args.max_drop >= 0:  # NaN too
        raise CnnkitError(f"--max-drop is the largest top-1 loss allowed, in points >= 0; got {args.max_drop}")
    if args.int8 and args.fixed_batch:
        raise CnnkitError("--int8 cannot be combined with --fixed-batch: int8 accuracy and speed are measured on "
                          "batches of 32 (drop --fixed-batch, or export the batch-1 model without --int8)")
    source, real = None, None
    if args.calibration is not None:
        source = open_run(args.run, args.calibration)
        model, summary = source.model, source.summary
        real = split_batches(source, test_split(source), limit=7, seed=args.seed).first(7)
    else:
        model, summary = load_run(args.run)
        print("export: no --calibration DATA: checked on random inputs only", file=sys.stderr)
    check = export_checked(model, summary, out, opset=args.opset, dynamic_batch=not args.fixed_batch, real=real)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB); ONNX Runtime vs PyTorch: {check.describe()}")
    report = None
    if source is not None and args.int8:
        report = export_int8(source, out, method=args.method, calibration_size=args.calibration_size,
                             max_drop=args.max_drop, threads=args.threads, seed=args.seed)
        print(format_int8_report(report))
        if report.result.path is not None:
            print(f"wrote {report.result.path}")
    record_export(Path(args.run), out, check, report)
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import torch

    from cnnkit.deploy.bench import bench_target, format_table, parse_backends, resolve_target, rows_json, write_csv
    from cnnkit.device_info import device_info

    backends = parse_backends(args.backends)
    threads = args.threads or torch.get_num_threads()
    rows, requantized = [], False
    for text in args.targets:
        target = resolve_target(text, img_size=args.img_size)
        requantized |= "int8" in backends and not target.quantized
        chosen = tuple(b for b in backends if b in target.backends)
        if not chosen:
            raise target.refuse(backends)
        rows += bench_target(target, backends=chosen, batch_sizes=args.batch_sizes, threads=threads,
                             repeats=args.repeats)
    write_csv(rows, Path(args.csv))
    if args.json:
        print(rows_json(rows))
    else:
        print(f"machine: {device_info().describe()}")
        print(format_table(rows))
        if requantized:
            print("int8 rows (except an int8 .onnx's own) are calibrated on random inputs: their speed is real, "
                  "their accuracy is not measured "
                  "(cnnkit export --int8 measures it)")
        unknown = sorted({row.target for row in rows if row.params is None})
        if unknown:
            print(f"params/MACs unknown for {', '.join(unknown)}: the graph is not its zoo architecture's "
                  "(a channel-pruned or re-headed run? bench its run directory)")
        print(f"csv: {args.csv}")
    return 0
