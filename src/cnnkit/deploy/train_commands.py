"""`cnnkit prune | distill | compare`: deployment steps that train (through cnnkit.train's `fit`)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import fields
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from cnnkit.analysis.summary import summary as analyse
from cnnkit.data.commands import positive_int
from cnnkit.deploy.bench import parse_backends
from cnnkit.deploy.channels import prune_channels
from cnnkit.deploy.compare import compare_row, format_compare, plot_pareto, test_metrics, write_compare_csv
from cnnkit.deploy.distill import DistillationTrainer, check_settings
from cnnkit.deploy.from_run import SourceRun, open_run
from cnnkit.deploy.latency import torch_latency
from cnnkit.deploy.lottery import LotterySettings, format_lottery, lottery_ticket, parse_rewind
from cnnkit.deploy.masks import MaskHold, global_magnitude_masks, sparsity_report
from cnnkit.deploy.run_images import test_split
from cnnkit.errors import CnnkitError
from cnnkit.inference import update_summary
from cnnkit.models.factory import list_models
from cnnkit.train.config import TrainConfig, config_from_dict
from cnnkit.train.data_prep import prepare_data
from cnnkit.train.fit import RunInfo, fit
from cnnkit.train.model_setup import build_model, fit_normalisation
from cnnkit.train.options import add_train_config_flags
from cnnkit.train.preprocessing import data_bundle, resolve_augment
from cnnkit.train.report import format_metrics
from cnnkit.train.trainer import pick_device


def register(subparsers: argparse._SubParsersAction) -> None:
    prune = subparsers.add_parser("prune", help="prune a finished run (magnitude, lottery ticket, or channels) "
                                                "and fine-tune it")
    prune.add_argument("run", help="run directory to prune")
    prune.add_argument("data", help="the run's dataset (path or `wafer`)")
    prune.add_argument("--out", required=True, help="run directory of the pruned model")
    prune.add_argument("--sparsity", type=float, default=None,
                       help="fraction of conv/linear weights zeroed (with --structured channels: of filters "
                            "removed; default 0.8); --iterative sets it by --rounds and --rate instead")
    prune.add_argument("--structured", choices=("channels",), default=None,
                       help="remove whole filters by L1 norm (Li et al. 2017): a smaller dense model")
    prune.add_argument("--iterative", action="store_true", help="lottery ticket: prune, rewind, retrain in rounds")
    prune.add_argument("--rounds", type=int, default=5, help="--iterative: pruning rounds (default 5)")
    prune.add_argument("--rate", type=float, default=0.2, help="--iterative: fraction of survivors pruned per round")
    prune.add_argument("--rewind", default="init", help="--iterative: init or epoch:K (default init)")
    prune.add_argument("--no-control", action="store_true", help="--iterative: skip the random-reinit control")
    prune.add_argument("--quiet", action="store_true", help="no progress output")
    add_train_config_flags(prune, title="training (each flag not given keeps RUN's config.yaml value)",
                           show_defaults=False)
    prune.set_defaults(func=run_prune)

    distill = subparsers.add_parser("distill", help="train a student from a finished teacher run (Hinton et al. 2015)")
    distill.add_argument("teacher", help="teacher run directory")
    distill.add_argument("data", help="the teacher's dataset (path or `wafer`)")
    distill.add_argument("--student", required=True, help="student model name")
    distill.add_argument("--temperature", type=float, default=4.0, help="softmax temperature T (default 4)")
    distill.add_argument("--alpha", type=float, default=0.9, help="weight of the soft term (default 0.9)")
    distill.add_argument("--out", required=True, help="run directory of the student")
    distill.add_argument("--quiet", action="store_true", help="no progress output")
    add_train_config_flags(distill, title="training (each flag not given keeps TEACHER's config.yaml value)",
                           show_defaults=False)
    distill.set_defaults(func=run_distill)

    compare = subparsers.add_parser("compare", help="backbones side by side: accuracy, cost, speed, Pareto front")
    compare.add_argument("data", help="dataset path or `wafer`")
    compare.add_argument("--models", default=None, help="comma-separated model names to train with one recipe")
    compare.add_argument("--runs", nargs="+", default=None, help="finished runs to compare instead of training")
    compare.add_argument("--img-size", type=int, default=None, help="input size when training (default: the model's)")
    compare.add_argument("--out", required=True,
                         help="folder for compare.csv, pareto.png, the trained runs and exports/<run>/*.onnx")
    compare.add_argument("--backends", default="torch,onnx",
                         help="comma-separated of torch,onnx,int8 (default torch,onnx); int8 is calibrated on "
                              "each run's training images")
    compare.add_argument("--calibration-size", type=positive_int, default=256,
                         help="int8: training images that calibrate (default 256)")
    compare.add_argument("--quiet", action="store_true", help="no progress output")
    add_train_config_flags(compare, title="training, with --models (one recipe for every model; with --runs only "
                                          "--device applies)")
    compare.set_defaults(func=run_compare)


def config_over(base: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """`base` with every training flag given on the command line applied."""
    values = base.to_dict()
    values.update({f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None})
    return config_from_dict(values, source="flags")


# ----------------------------------------------------------------- prune
def run_prune(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.iterative and args.structured:
        raise CnnkitError("--iterative and --structured channels cannot be combined")
    if args.iterative and args.sparsity is not None:
        raise CnnkitError(f"--sparsity {args.sparsity} has no effect with --iterative: each round prunes --rate "
                          f"of the survivors, density {1 - args.rate:g}^rounds after --rounds {args.rounds}")
    sparsity = 0.8 if args.sparsity is None else args.sparsity
    if not args.iterative and not 0.0 <= sparsity < 1.0:  # checked before OUT is written to
        raise CnnkitError(f"--sparsity must be in [0, 1), got {sparsity}")
    source = open_run(args.run, args.data, out=None if args.iterative else out)
    config = config_over(source.config, args)
    if args.iterative:
        settings = LotterySettings(args.rounds, args.rate, parse_rewind(args.rewind), control=not args.no_control)
        rows = lottery_ticket(source, config, settings, out, quiet=args.quiet)
        print(format_lottery(rows))
        print(f"runs per round in {out}/round<r> (controls in {out}/control<r>), table in {out}/lottery.csv")
        return 0
    if args.structured:
        return _prune_channels(source, config, sparsity, out, quiet=args.quiet)
    device = pick_device(config.device)
    before = test_metrics(source, device=device)[0]
    masks = global_magnitude_masks(source.model, 1.0 - sparsity)
    fit(source.model, source.bundle(config), config, source.info(), run_dir=out,
        callbacks=[MaskHold(masks)], quiet=args.quiet)
    best = load_file(out / "best.safetensors")
    report = sparsity_report(best, list(masks))
    source.model.load_state_dict(best)
    after = test_metrics(source, device=device)[0]
    summary = update_summary(out, sparsity=report.layers, global_sparsity=report.global_sparsity,
                             pruned_from=str(source.path), channel_plan=source.summary.channel_plan,
                             pruning={"method": "global_magnitude", "target_sparsity": sparsity,
                                      "prunable_weights": report.prunable_weights, "source_test_top1": before})
    print(format_metrics(summary, out))
    print(f"sparsity {100 * report.global_sparsity:.2f}% of {report.prunable_weights:,} conv/linear weights; "
          f"{test_split(source)} top-1 {100 * before:.2f}% before pruning, {100 * after:.2f}% after")
    return 0


def _costs(model: Any, input_size: tuple[int, int, int], device: Any) -> dict[str, float]:
    latency = torch_latency(model, input_size, device=device, budget_s=2.0)
    return {"params": sum(p.numel() for p in model.parameters()), "macs": analyse(model, input_size).total_macs,
            "latency_p50_ms_batch1": latency.p50_ms_batch1, "images_per_s_batch32": latency.images_per_s_batch32}


def _prune_channels(source: SourceRun, config: TrainConfig, fraction: float, out: Path, *, quiet: bool) -> int:
    try:
        small, plan = prune_channels(source.model, fraction)
    except CnnkitError as error:
        raise CnnkitError(f"{source.summary.model_name}: {error}") from None
    device = pick_device(config.device)
    input_size = tuple(source.model.default_cfg.input_size)
    before, after = _costs(source.model, input_size, device), _costs(small, input_size, device)
    fit(small, source.bundle(config, small), config, source.info(small), run_dir=out, quiet=quiet)
    summary = update_summary(out, channel_plan=plan, pruned_from=str(source.path),
                             pruning={"method": "channels_l1", "fraction_removed": fraction},
                             structured={"before": before, "after": after})
    print(format_metrics(summary, out))
    for key in before:
        digits = 0 if key in ("params", "macs") else 2  # counts, then milliseconds and images/s
        print(f"{key:>22}: {before[key]:>14,.{digits}f} -> {after[key]:>14,.{digits}f}  "
              f"({after[key] / before[key]:.2f}x)")
    return 0


# ----------------------------------------------------------------- distill
def run_distill(args: argparse.Namespace) -> int:
    check_settings(args.temperature, args.alpha)
    out = Path(args.out)
    teacher = open_run(args.teacher, args.data, out=out)
    config = config_over(teacher.config, args)
    cfg = teacher.model.default_cfg
    student = build_model(args.student, num_classes=len(teacher.data.class_names), in_chans=cfg.input_size[0],
                          seed=config.seed)
    # The student sees the teacher's very batches: same input size and preprocessing.
    student.default_cfg = dataclasses.replace(student.default_cfg, input_size=cfg.input_size, mean=cfg.mean,
                                              std=cfg.std, crop_pct=cfg.crop_pct, interpolation=cfg.interpolation)

    def make_trainer(*positional: Any, **keywords: Any) -> DistillationTrainer:
        trainer = DistillationTrainer(*positional, **keywords)
        return trainer.configure(teacher.model, temperature=args.temperature, alpha=args.alpha)

    fit(student, teacher.bundle(config, student), config, teacher.info(student, args.student), run_dir=out,
        quiet=args.quiet, trainer_class=make_trainer)
    # Teacher and student scored on one split (test, else val), the student with its best weights.
    device, split = pick_device(config.device), test_split(teacher)
    teacher_top1 = test_metrics(teacher, device=device)[0]
    student.load_state_dict(load_file(out / "best.safetensors"))
    student_top1 = test_metrics(dataclasses.replace(teacher, model=student), device=device)[0]
    summary = update_summary(out, teacher=str(teacher.path),
                             distillation={"teacher_model": teacher.summary.model_name, "split": split,
                                           "teacher_top1": teacher_top1, "student_top1": student_top1,
                                           "temperature": args.temperature, "alpha": args.alpha})
    print(format_metrics(summary, out))
    print(f"{split} top-1: teacher {teacher.summary.model_name} {100 * teacher_top1:.2f}%, "
          f"student {args.student} {100 * student_top1:.2f}%")
    return 0


# ----------------------------------------------------------------- compare
def models_to_train(text: str, out: Path) -> list[str]:
    """The --models names, all checked before any is trained (a bad name found after hours of
    training the others would waste them): known to the zoo, none twice, no run already in OUT/name."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise CnnkitError(f"--models: no model names in {text!r}")
    unknown = [name for name in names if name not in list_models()]
    if unknown:
        raise CnnkitError(f"--models: unknown model {', '.join(map(repr, unknown))}; the zoo's models: "
                          f"{', '.join(list_models())}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise CnnkitError(f"--models: {', '.join(twice)} given more than once")
    done = [str(out / name) for name in names if (out / name / "summary.json").is_file()]
    if done:
        raise CnnkitError(f"{', '.join(done)} already hold(s) a run: pass it with --runs, or choose another --out")
    return names


def _train_backbone(name: str, args: argparse.Namespace, config: TrainConfig, out: Path) -> Path:
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.data, seed=config.seed, run_dir=run_dir)
    model = build_model(name, num_classes=len(data.class_names), in_chans=data.in_chans, seed=config.seed,
                        img_size=args.img_size)
    augment, cfg = resolve_augment(model.default_cfg, None)
    model.default_cfg = fit_normalisation(cfg, data.splits["train"])
    bundle = data_bundle(data, model.default_cfg, config, augment)
    if not args.quiet:
        print(f"training {name} -> {run_dir}")
    fit(model, bundle, config, RunInfo.for_model(name, model, data.class_names), run_dir=run_dir, quiet=args.quiet)
    return run_dir


def run_compare(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.runs and args.models:
        raise CnnkitError("give either --models (trained here with one recipe) or --runs (finished runs), not both")
    if not args.runs and not args.models:
        raise CnnkitError("nothing to compare: give --models a,b,c or --runs RUN...")
    unused = [f"--{f.name.replace('_', '-')}" for f in fields(TrainConfig)
              if args.runs and f.name != "device" and getattr(args, f.name) is not None]
    if args.img_size is not None and args.runs:
        unused.append("--img-size")
    if unused:
        raise CnnkitError(f"{', '.join(unused)}: training flags have no effect with --runs (finished runs are "
                          "measured as they are); drop them, or train with --models")
    backends = parse_backends(args.backends)
    names = models_to_train(args.models, out) if args.models else []
    out.mkdir(parents=True, exist_ok=True)
    config = config_over(TrainConfig(), args)
    runs = [Path(r) for r in args.runs] if args.runs else [_train_backbone(name, args, config, out) for name in names]
    device = pick_device(config.device)
    exports = out / "exports"
    names = [run.resolve().name for run in runs]
    folders = [exports / (name if names.count(name) == 1 else f"{index}-{name}") for index, name in enumerate(names)]
    rows = [compare_row(open_run(run, args.data), device=device, backends=backends, workdir=folder,
                        calibration_size=args.calibration_size) for run, folder in zip(runs, folders)]
    write_compare_csv(rows, out / "compare.csv")
    plot_pareto(rows, out / "pareto.png")
    print(format_compare(rows))
    print(f"wrote {out / 'compare.csv'} and {out / 'pareto.png'}")
    return 0
