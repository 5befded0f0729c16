"""`cnnkit train | finetune | lr-find | eval | predict`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from cnnkit.data.decode import BadImageError, decode_image
from cnnkit.data.pipeline import eval_pipeline
from cnnkit.errors import CnnkitError
from cnnkit.train import setup
from cnnkit.train.config import TrainConfig, load_config
from cnnkit.train.evaluate import evaluate_model, ordered_loader
from cnnkit.train.distributed import DistributedContext, init_from_torchrun, shutdown
from cnnkit.train.finetune import finetune, parse_phases
from cnnkit.train.fit import fit
from cnnkit.train.lr_find import lr_find, plot_lr_find
from cnnkit.train.trainer import pick_device
from cnnkit.train.options import add_train_config_flags, resolve
from cnnkit.train.report import format_confusion, format_metrics


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a model on a dataset (or `wafer`)")
    _run_arguments(train, default_model="compact_cnn")
    train.set_defaults(func=run_train)

    tune = subparsers.add_parser("finetune", help="fine-tune a pretrained model: head first, then all layers")
    _run_arguments(tune, default_model="resnet50")
    tune.add_argument("--phases", default="head:5,all:10", help="e.g. head:5,all:10 (default)")
    tune.add_argument("--unfrozen-lr-scale", type=float, default=0.1, help="LR multiplier once unfrozen")
    tune.add_argument("--layer-decay", type=float, default=0.7, help="layer-wise LR decay once unfrozen")
    tune.set_defaults(func=run_finetune)

    finder = subparsers.add_parser("lr-find", help="LR range test: plot loss vs learning rate, suggest one")
    _run_arguments(finder, default_model="compact_cnn")
    finder.add_argument("--plot", default="lr_find.png", help="where to write the plot")
    finder.set_defaults(func=run_lr_find)

    evaluate = subparsers.add_parser("eval", help="evaluate a finished run on a dataset")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument("data", help="dataset path or `wafer`")
    evaluate.add_argument("--split", default=None, help="split to evaluate (default: test, else the whole set)")
    evaluate.add_argument("--seed", type=int, default=None,
                          help="seed of a derived split when the run has no split.json (default: the run's)")
    evaluate.add_argument("--batch-size", type=positive_int, default=64)
    evaluate.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(func=run_eval)

    predict = subparsers.add_parser("predict", help="top-k classes of images with a finished run")
    predict.add_argument("run", help="run directory")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--top-k", type=positive_int, default=5)
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(func=run_predict)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse names the option in its error)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _run_arguments(parser: argparse.ArgumentParser, *, default_model: str) -> None:
    parser.add_argument("data", help="dataset path (image folders, MNIST IDX, CIFAR, .npz) or `wafer`")
    parser.add_argument("--model", default=None, help=f"model name (default {default_model})")
    parser.add_argument("--out", default=None, help="run directory (default runs/<model>)")
    parser.add_argument("--img-size", type=int, default=None, help="input size (default: the model's)")
    parser.add_argument("--pretrained", default=None, help="local .safetensors/.pth weights")
    parser.add_argument("--augment", choices=("standard", "flip", "none"), default=None,
                        help="training augmentation (default: standard for photos, none below 64 px)")
    parser.add_argument("--config", default=None, help="YAML file of any of these options")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_train_config_flags(parser)
    parser.set_defaults(default_model=default_model)


def _start(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any], Any, Path, DistributedContext]:
    config, run = resolve(args, {"model": args.default_model})
    out = Path(run["out"] or f"runs/{run['model']}")
    if not args.resume and (out / "last.pt").exists():
        raise CnnkitError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    context = init_from_torchrun(config.device)
    if context.is_main:
        out.mkdir(parents=True, exist_ok=True)
    data = setup.prepare_data(args.data, seed=config.seed, run_dir=out if context.is_main else None,
                              saved_split=out / "split.json" if args.resume else None)
    return config, run, data, out, context


def _model_and_bundle(config: TrainConfig, run: dict[str, Any], data: Any):
    model = setup.build_model(run["model"], num_classes=len(data.class_names), in_chans=data.in_chans,
                              seed=config.seed,
                              pretrained=run["pretrained"], img_size=run["img_size"])
    augment, cfg = setup.resolve_augment(model.default_cfg, run["augment"])
    model.default_cfg = setup.fit_normalisation(cfg, data.splits["train"])
    bundle = setup.data_bundle(data, model.default_cfg, config, augment)
    return model, bundle


def run_train(args: argparse.Namespace) -> int:
    config, run, data, out, context = _start(args)
    model, bundle = _model_and_bundle(config, run, data)
    summary = fit(model, bundle, config, setup.run_info(run["model"], model, data, {}), run_dir=out,
                  resume=args.resume, distributed=context, quiet=args.quiet)
    if context.is_main:
        print(format_metrics(summary, out))
    shutdown(context)
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    config, run, data, out, context = _start(args)
    if run["pretrained"] is None:
        print("finetune: no --pretrained weights given; the backbone starts from random initialisation",
              file=sys.stderr)
    model, bundle = _model_and_bundle(config, run, data)
    phases = parse_phases(args.phases, unfrozen_lr_scale=args.unfrozen_lr_scale, layer_decay=args.layer_decay)
    summary = finetune(model, bundle, config, setup.run_info(run["model"], model, data, {}), phases,
                       classifier_path=model.default_cfg.classifier, run_dir=out, resume=args.resume,
                       distributed=context, quiet=args.quiet)
    if context.is_main:
        print(format_metrics(summary, out))
    shutdown(context)
    return 0


def run_lr_find(args: argparse.Namespace) -> int:
    config, run = resolve(args, {"model": args.default_model})
    data = setup.prepare_data(args.data, seed=config.seed)
    model, bundle = _model_and_bundle(config, run, data)
    result = lr_find(model, bundle.train, config, sample_transform=bundle.train_transform,
                     batch_transform=bundle.batch_transform)
    plot_lr_find(result, args.plot)
    print(f"suggested learning rate: {result.suggestion:.3g} (plot: {args.plot})")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    model, summary = setup.load_run(args.run)
    seed = args.seed if args.seed is not None else _run_seed(Path(args.run))
    data = setup.prepare_data(args.data, seed=seed, saved_split=Path(args.run) / "split.json")
    if data.class_names != summary["class_names"]:
        raise CnnkitError(f"{args.data} has classes {data.class_names}, the run was trained on {summary['class_names']}")
    split = args.split or ("test" if "test" in data.splits else next(iter(data.splits)))
    if split not in data.splits:
        raise CnnkitError(f"{args.data} has no split {split!r} (it has {sorted(data.splits)})")
    evaluation = eval_pipeline(model.default_cfg)
    device = pick_device(args.device)
    loader = ordered_loader(data.splits[split], evaluation.sample, batch_size=args.batch_size, seed=seed,
                            device=device, batch_transform=setup.batch_stage(evaluation, None, len(data.class_names)),
                            channels_last=True)
    meter = evaluate_model(model.to(device), loader, num_classes=len(data.class_names), device=device)
    metrics = meter.compute(f"{split}_")
    confusion = meter.confusion.tolist()
    if args.json:
        print(json.dumps({"split": split, **metrics, "confusion": confusion}, indent=2))
    else:
        print("  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        print(format_confusion(confusion, data.class_names))
    return 0


def _run_seed(run_dir: Path) -> int:
    config_path = run_dir / "config.yaml"
    return load_config(config_path).seed if config_path.exists() else 0


def run_predict(args: argparse.Namespace) -> int:
    model, summary = setup.load_run(args.run)
    cfg = model.default_cfg
    evaluation = eval_pipeline(cfg)
    mode = "L" if cfg.input_size[0] == 1 else "RGB"
    results, failures = [], 0
    for path in args.images:
        try:
            image = decode_image(path, mode=mode, size_hint=evaluation.decode_hint)
        except (BadImageError, OSError) as error:
            print(f"predict: skipped {path}: {error}", file=sys.stderr)
            failures += 1
            continue
        with torch.inference_mode():
            probabilities = model(evaluation(image)[None]).softmax(dim=1)[0]
        top = probabilities.topk(min(args.top_k, len(summary["class_names"])))
        results.append({"image": path, "top": [
            {"class": summary["class_names"][i], "probability": round(float(p), 6)}
            for p, i in zip(top.values, top.indices)
        ]})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            shown = ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in result["top"])
            print(f"{result['image']}: {shown}")
    return 1 if failures else 0
