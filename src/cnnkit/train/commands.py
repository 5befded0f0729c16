"""`cnnkit train | finetune | lr-find` (eval and predict: cnnkit/inference/commands.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cnnkit.data.augment_config import AUGMENTS, PRESETS
from cnnkit.data.commands import positive_int
from cnnkit.errors import CnnkitError
from cnnkit.train import data_prep, model_setup, preprocessing
from cnnkit.train.config import TrainConfig
from cnnkit.train.distributed import DistributedContext, init_from_torchrun, shutdown
from cnnkit.train.finetune import Phase, finetune, parse_phases
from cnnkit.train.fit import RunInfo, check_resume_config, fit
from cnnkit.train.lr_find import check_plot_path, loss_fell, lr_find, plot_lr_find
from cnnkit.train.options import CONFIG_TITLE, RunOptions, add_train_config_flags, flags_given, resolve
from cnnkit.train.report import format_metrics


DEFAULT_PHASES = "head:5,all:10"
UNFROZEN_LR_SCALE, LAYER_DECAY = 0.1, 0.7


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a model on a dataset (or `wafer`)")
    _run_arguments(train, default_model="compact_cnn")
    train.set_defaults(func=run_train)

    tune = subparsers.add_parser("finetune", help="fine-tune a pretrained model: head first, then all layers")
    _run_arguments(tune, default_model="resnet50")
    tune.add_argument("--phases", default=None,
                      help=f"NAME[+NAME]:EPOCHS[@LR],... e.g. head:5@1e-3,layer3+layer4:10@1e-4,all:5@1e-5 "
                           f"(module names of the model; default {DEFAULT_PHASES}: without @LR, unfrozen "
                           f"phases run at --unfrozen-lr-scale x lr with --layer-decay)")
    tune.add_argument("--phase-schedule", choices=("per_phase", "across"), default=None,
                      help="the LR schedule runs within each phase (default) or once across all phases")
    tune.add_argument("--unfrozen-lr-scale", type=float, default=None,
                      help=f"LR multiplier once unfrozen, for phases without @LR (default {UNFROZEN_LR_SCALE})")
    tune.add_argument("--layer-decay", type=float, default=None,
                      help=f"layer-wise LR decay once unfrozen, for phases without @LR (default {LAYER_DECAY})")
    tune.set_defaults(func=run_finetune)

    finder = subparsers.add_parser("lr-find", help="LR range test: plot loss vs learning rate, suggest one")
    _run_arguments(finder, default_model="compact_cnn")
    finder.add_argument("--plot", default="lr_find.png", help="where to write the plot")
    finder.add_argument("--start-lr", type=float, default=1e-7, help="first learning rate of the sweep")
    finder.add_argument("--end-lr", type=float, default=10.0, help="last learning rate of the sweep")
    finder.add_argument("--num-steps", type=positive_int, default=100, help="optimizer steps of the sweep")
    finder.set_defaults(func=run_lr_find)


def _run_arguments(parser: argparse.ArgumentParser, *, default_model: str) -> None:
    parser.add_argument("data", help="dataset path (image folders, MNIST IDX, CIFAR, .npz) or `wafer`")
    parser.add_argument("--model", default=None, help=f"model name (default {default_model})")
    parser.add_argument("--out", default=None, help="run directory (default runs/<model>)")
    parser.add_argument("--img-size", type=int, default=None, help="input size (default: the model's)")
    parser.add_argument("--pretrained", default=None, help="local .safetensors/.pth weights")
    parser.add_argument("--augment", choices=tuple(PRESETS), default=None,
                        help="training augmentation preset (default: standard for photos, none below 64 px); "
                             f"YAML `augment:` also takes a list of steps from: {', '.join(AUGMENTS)}")
    parser.add_argument("--drop-outliers", action="store_true", default=None,
                        help="leave out readable files in a format almost absent from the set (e.g. a placeholder GIF)")
    parser.add_argument("--head", default=None, metavar="SPEC",
                        help="replace the classifier head: linear, or mlp:256 (hidden ReLU layers; mlp:512,256)")
    parser.add_argument("--head-dropout", type=float, default=None, metavar="P",
                        help="Dropout in the --head (after each hidden layer; before the Linear of a linear head)")
    parser.add_argument("--model-opt", action="append", default=None, metavar="KEY=VALUE",
                        help="an option of the model's builder, e.g. drop_rate=0.2 (repeatable; checked by name "
                             "and type)")
    parser.add_argument("--config", default=None, help="YAML file of any of these options")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_train_config_flags(parser, title=CONFIG_TITLE)
    parser.set_defaults(default_model=default_model)


def _resolve(args: argparse.Namespace) -> tuple[TrainConfig, RunOptions]:
    """The run's settings; the finetune-only ones are refused by the commands that train in one phase."""
    config, run = resolve(args, default_model=args.default_model)
    if run.finetune_only and args.func is not run_finetune:
        given = ", ".join(f"{name} {value!r}" for name, value in run.finetune_only.items())
        raise CnnkitError(f"phases ({given}) are for `cnnkit finetune`; this command trains in one phase")
    return config, run


def start_run(data_path: str, config: TrainConfig, run: RunOptions, *, resume: bool,
              default_out: str) -> tuple[Path, DistributedContext, data_prep.PreparedData]:
    """The run directory (refusing to overwrite a run unless resuming), the torchrun context, and
    the data with its split (saved by rank 0; reused from split.json on resume)."""
    out = Path(run.out or default_out)
    if out.exists() and not out.is_dir():
        raise CnnkitError(f"--out {out} is a file, not a run directory")
    if not resume and (out / "last.pt").exists():
        raise CnnkitError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if resume:
        check_resume_config(config, out)  # before the data is scanned
    context = init_from_torchrun(config.device)
    if context.is_main:
        out.mkdir(parents=True, exist_ok=True)
    data = data_prep.prepare_data(data_path, seed=config.seed, run_dir=out if context.is_main else None,
                                  saved_split=out / "split.json" if resume else None,
                                  drop_format_outliers=run.drop_outliers)
    return out, context, data


def _model_and_bundle(config: TrainConfig, run: RunOptions, data: Any):
    model = model_setup.build_model(run.model, num_classes=len(data.class_names), in_chans=data.in_chans,
                              seed=config.seed,
                              pretrained=run.pretrained, img_size=run.img_size, overrides=run.model_options,
                              head=run.head_spec())
    if run.img_size is None and run.pretrained is None:
        model_setup.fit_small_images(model, data.image_size)
    augment, cfg = preprocessing.resolve_augment(model.default_cfg, run.augment)
    model.default_cfg = model_setup.fit_normalisation(cfg, data.splits["train"])
    bundle = preprocessing.data_bundle(data, model.default_cfg, config, augment)
    return model, bundle


def run_train(args: argparse.Namespace) -> int:
    config, run = _resolve(args)
    out, context, data = start_run(args.data, config, run, resume=args.resume, default_out=f"runs/{run.model}")
    model, bundle = _model_and_bundle(config, run, data)
    info = RunInfo.for_model(run.model, model, data.class_names, run.model_options, head=run.head_spec())
    summary = fit(model, bundle, config, info, run_dir=out,
                  resume=args.resume, distributed=context, quiet=args.quiet)
    if context.is_main:
        print(format_metrics(summary, out))
    shutdown(context)
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    config, run = _resolve(args)
    phases = finetune_phases(run)  # a bad --phases is named before the data is read
    if flags_given(args, ["epochs"]):
        raise CnnkitError("finetune: the epochs come from --phases (e.g. head:5,all:10); --epochs does not apply")
    out, context, data = start_run(args.data, config, run, resume=args.resume, default_out=f"runs/{run.model}")
    if run.pretrained is None:
        print("finetune: no --pretrained weights given; the backbone starts from random initialisation",
              file=sys.stderr)
    model, bundle = _model_and_bundle(config, run, data)
    info = RunInfo.for_model(run.model, model, data.class_names, run.model_options, head=run.head_spec())
    summary = finetune(model, bundle, config, info, phases,
                       classifier_path=model.default_cfg.classifier, run_dir=out, resume=args.resume,
                       distributed=context, quiet=args.quiet, schedule=run.phase_schedule or "per_phase")
    if context.is_main:
        print(format_metrics(summary, out))
    shutdown(context)
    return 0


def finetune_phases(run: RunOptions) -> tuple[Phase, ...]:
    """The phases of `cnnkit finetune`; unfrozen_lr_scale or layer_decay given where no phase uses
    them (every unfrozen phase has its @LR) is an error, not ignored."""
    phases = parse_phases(
        run.phases or DEFAULT_PHASES,
        unfrozen_lr_scale=run.unfrozen_lr_scale if run.unfrozen_lr_scale is not None else UNFROZEN_LR_SCALE,
        layer_decay=run.layer_decay if run.layer_decay is not None else LAYER_DECAY)
    unused = [name for name in ("unfrozen_lr_scale", "layer_decay") if name in run.finetune_only]
    if unused and not any(phase.layer_decay is not None for phase in phases):
        raise CnnkitError(f"{' and '.join(unused)} apply to phases without @LR that unfreeze more than the head; "
                          f"every such phase of {run.phases!r} sets its own LR")
    return phases


def run_lr_find(args: argparse.Namespace) -> int:
    if args.resume or args.out is not None:
        raise CnnkitError("lr-find: --resume and --out are for training runs; lr-find writes only its plot (--plot)")
    swept = flags_given(args, ("lr", "epochs", "schedule", "warmup_epochs", "step_size_epochs", "step_gamma",
                               "early_stopping_patience", "ema_decay", "checkpoint_every_steps", "monitor",
                               "monitor_mode"))
    if swept:
        raise CnnkitError(f"lr-find: {', '.join(swept)} do not apply: it sweeps the LR itself from --start-lr to "
                          f"--end-lr over --num-steps steps")
    config, run = resolve(args, default_model=args.default_model)
    check_plot_path(args.plot)
    data = data_prep.prepare_data(args.data, seed=config.seed, drop_format_outliers=run.drop_outliers)
    model, bundle = _model_and_bundle(config, run, data)
    result = lr_find(model, bundle.train, config, num_classes=len(data.class_names),
                     sample_transform=bundle.train_transform, batch_transform=bundle.batch_transform,
                     start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.num_steps)
    plot_lr_find(result, args.plot)
    print(f"suggested learning rate: {result.suggestion:.3g} (plot: {args.plot})")
    if not loss_fell(result.losses):
        print(f"lr-find: warning: the loss did not fall during the sweep ({result.losses[0]:.4f} at the start, at "
              f"best {min(result.losses):.4f}), so the suggestion is a guess: sweep longer (--num-steps) or check the "
              "data and model", file=sys.stderr)
    return 0
