"""`cnnkit predict | eval`: thin formatting over `Predictor` and the shared evaluation loop."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from cnnkit.data.commands import positive_int
from cnnkit.data.splits import held_out_split
from cnnkit.errors import CnnkitError
from cnnkit.inference.bulk import collect_files, errors_path, in_input_order, merge_outputs, predict_files
from cnnkit.inference.evaluation import evaluate_backend
from cnnkit.inference.predictor import Failure, Predictor
from cnnkit.inference.records import prediction_record
from cnnkit.inference.tta import TTA, VIEWS
from cnnkit.train import data_prep, preprocessing
from cnnkit.train.config import load_config
from cnnkit.train.distributed import DistributedContext, init_from_torchrun, shutdown
from cnnkit.train.evaluate import ordered_loader
from cnnkit.train.progress import RateReporter
from cnnkit.train.report import format_confusion, format_metrics_line
from cnnkit.train.trainer import pick_device


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (argparse names the option in its error)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def tta_views(text: str) -> TTA:
    """argparse type: `--tta hflip,vflip` (the views of `cnnkit.inference.tta.VIEWS`)."""
    try:
        return TTA.parse(text)
    except CnnkitError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("tta: ")) from None


TTA_HELP = (f"test-time augmentation: also run these views of each image and average the logits, e.g. "
            f"hflip or hflip,vflip ({', '.join(VIEWS)}; default none)")


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser("eval", help="evaluate a finished run (or an exported .onnx) on a dataset")
    evaluate.add_argument("run", help="run directory, or an .onnx exported by `cnnkit export`")
    evaluate.add_argument("data", help="dataset path or `wafer`")
    evaluate.add_argument("--split", default=None, help="split to evaluate (default: test, else val, else the first)")
    evaluate.add_argument("--seed", type=int, default=None,
                          help="seed of a derived split when the run has no split.json, e.g. for an .onnx "
                               "(default: the run's; 0 for an .onnx)")
    evaluate.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default 64)")
    evaluate.add_argument("--device", default=None,
                          help="cpu, cuda, cuda:1 ... (default: CUDA if available; for an .onnx: if onnxruntime has CUDA)")
    evaluate.add_argument("--tta", type=tta_views, default=None, metavar="VIEWS", help=TTA_HELP)
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(func=run_eval)

    predict = subparsers.add_parser("predict", help="top-k classes of images or whole folders with a finished run")
    predict.add_argument("run", help="run directory, or an .onnx exported by `cnnkit export`")
    predict.add_argument("images", nargs="+", help="image files and/or folders (walked recursively)")
    predict.add_argument("--top-k", type=positive_int, default=5, help="classes per image (default 5)")
    predict.add_argument("--out", default=None,
                         help="write one row per image to this .csv or .jsonl (resumes: files already in it are "
                              "skipped); unreadable files go to OUT.errors.csv")
    predict.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass (default 32)")
    predict.add_argument("--workers", type=non_negative_int, default=1, help="decoding worker processes (default 1)")
    predict.add_argument("--device", default=None,
                         help="cpu, cuda, ... (default: CUDA if available; for an .onnx: if onnxruntime has CUDA)")
    predict.add_argument("--json", action="store_true",
                         help="print JSON (without --out): a list of the rows a .jsonl --out holds")
    predict.add_argument("--tta", type=tta_views, default=None, metavar="VIEWS", help=TTA_HELP)
    predict.add_argument("--quiet", action="store_true", help="no progress output")
    predict.set_defaults(func=run_predict)


def open_predictor(target: str, *, device: str | torch.device | None, batch_size: int,
                   tta: TTA | None = None) -> Predictor:
    """A run directory's Predictor, or an .onnx file's (ONNX Runtime on `device`, default CUDA when
    onnxruntime has it; metadata preprocessing); with `tta`, averaging those views."""
    if Path(target).suffix.lower() == ".onnx":
        from cnnkit.inference.onnx_backend import onnx_providers

        try:
            onnx_providers(device)
        except CnnkitError as error:
            raise CnnkitError(f"--device: {error}") from None
        predictor = Predictor.from_onnx(target, batch_size=batch_size, device=device)
    else:
        predictor = Predictor.from_run(target, device=pick_device(device), batch_size=batch_size)
    if tta is None:
        return predictor
    try:
        return predictor.with_tta(tta)
    except CnnkitError as error:
        raise CnnkitError(f"--{error}") from None


def run_eval(args: argparse.Namespace) -> int:
    predictor = open_predictor(args.run, device=args.device, batch_size=args.batch_size, tta=args.tta)
    # An .onnx has no split.json of its own: pass --seed, or keep it beside a run whose split it uses.
    run_dir = Path(args.run) if Path(args.run).is_dir() else None
    seed = args.seed if args.seed is not None else (_run_seed(run_dir) if run_dir is not None else 0)
    data = data_prep.prepare_data(args.data, seed=seed,
                                  saved_split=run_dir / "split.json" if run_dir is not None else None)
    if tuple(data.class_names) != predictor.class_names:
        raise CnnkitError(f"{args.data} has classes {data.class_names}, the run was trained on "
                          f"{list(predictor.class_names)}")
    split = args.split or held_out_split(data.splits) or next(iter(data.splits))
    if split not in data.splits:
        raise CnnkitError(f"{args.data} has no split {split!r} (it has {sorted(data.splits)})")
    dataset = data.splits[split].with_decode_hint(predictor.pipeline.decode_hint)
    loader = ordered_loader(dataset, predictor.pipeline.sample, batch_size=args.batch_size, seed=seed,
                            device=predictor.device,
                            batch_transform=preprocessing.batch_stage(predictor.pipeline, None, len(data.class_names)),
                            channels_last=True)
    meter = evaluate_backend(predictor.backend, loader, num_classes=len(data.class_names))
    metrics = meter.compute(f"{split}_")
    confusion = meter.confusion.tolist()
    if args.json:
        print(json.dumps({"split": split, **metrics, "confusion": confusion}, indent=2))
    else:
        print(format_metrics_line(metrics))
        print(format_confusion(confusion, data.class_names))
    return 0


def _run_seed(run_dir: Path) -> int:
    config_path = run_dir / "config.yaml"
    return load_config(config_path).seed if config_path.exists() else 0


def run_predict(args: argparse.Namespace) -> int:
    if args.out is not None:
        return _predict_to_file(args)
    predictor = open_predictor(args.run, device=args.device, batch_size=args.batch_size, tta=args.tta)
    predictions = predictor.predict(collect_files(args.images), top_k=args.top_k)
    for failed in (p for p in predictions if not p.ok):
        print(f"predict: skipped {failed.source}: {failed.error}", file=sys.stderr)
    shown = [p for p in predictions if p.ok]
    if args.json:
        print(json.dumps([prediction_record(p) for p in shown], indent=2))
    else:
        for p in shown:
            print(f"{p.source}: " + ", ".join(f"{c.label} {100 * c.probability:.1f}%" for c in p.top))
    return 1 if len(shown) < len(predictions) else 0


def _predict_to_file(args: argparse.Namespace) -> int:
    context = init_from_torchrun(args.device)
    device = context.device if context.enabled else args.device
    predictor = open_predictor(args.run, device=device, batch_size=args.batch_size, tta=args.tta)
    files = collect_files(args.images)
    reporter = RateReporter(0, label=f"predict (rank {context.rank})" if context.enabled else "predict",
                            stream=sys.stderr, enabled=not args.quiet and context.is_main)

    def progress(done: int, total: int) -> None:
        reporter.total = total
        reporter.update(done)

    try:
        result = predict_files(predictor, files, args.out, top_k=args.top_k, num_workers=args.workers,
                               rank=context.rank, world_size=context.world_size, progress=progress)
    finally:
        reporter.close()
    failures = in_input_order(_gather_failures(context, result.failures), files)
    if context.is_main:
        rows = merge_outputs(files, args.out, world_size=context.world_size, failures=failures)
        for failure in failures:
            print(f"predict: skipped {failure.source}: {failure.reason}", file=sys.stderr)
        resumed = f" ({result.resumed} already there)" if result.resumed else ""
        print(f"predict: {rows} rows in {args.out}{resumed}"
              + (f"; {len(failures)} unreadable, listed in {errors_path(Path(args.out))}" if failures else ""))
    shutdown(context)
    return 1 if failures else 0


def _gather_failures(context: DistributedContext, failures: list[Failure]) -> list[Failure]:
    """Every rank's skipped files, on every rank (just this process's outside torchrun)."""
    if not context.enabled:
        return failures
    import torch.distributed as dist

    gathered: list[list[Failure]] = [[] for _ in range(context.world_size)]
    dist.all_gather_object(gathered, failures)
    return [f for part in gathered for f in part]
