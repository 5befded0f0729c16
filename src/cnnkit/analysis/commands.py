"""CLI: `cnnkit summary NAME` (layer table of a zoo model), `cnnkit conv` (conv arithmetic, or the
receptive field of a stack) and `cnnkit rf NAME` (receptive-field growth with depth)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from cnnkit.analysis.conv_calculator import ConvSpec, conv_report, format_conv_report
from cnnkit.analysis.json_view import conv_report_json, rf_growth_json, stack_json, summary_json
from cnnkit.analysis.layer_stack import format_stack, parse_stack, stack_receptive_fields
from cnnkit.analysis.rf_growth import format_rf_growth, rf_growth
from cnnkit.analysis.table import format_summary
from cnnkit.analysis.summary import summary
from cnnkit.errors import CnnkitError


def parse_input_size(text: str) -> tuple[int, int, int]:
    """'3,224,224' -> (3, 224, 224); anything else is a CnnkitError naming --input."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or min(sizes) < 1:
        raise CnnkitError(f"--input must be C,H,W with positive integers (e.g. 3,224,224), got {text!r}")
    return sizes  # type: ignore[return-value]


def build_for_analysis(name: str, num_classes: int | None, in_chans: int | None) -> nn.Module:
    """The zoo model built straight on the meta device (no weight init cost), or on CPU if it must.

    None keeps the model's own number of classes or input channels (10 and 1 for mnist_cnn).
    """
    from cnnkit.models.factory import create_model

    given = {"num_classes": num_classes, "in_chans": in_chans}
    options = {key: value for key, value in given.items() if value is not None}
    try:
        with torch.device("meta"):
            return create_model(name, **options)
    except CnnkitError:
        raise
    except (NotImplementedError, RuntimeError):
        # A builder that reads tensor values (e.g. .tolist()) cannot run on meta.
        return create_model(name, **options)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def _summary_of(args: argparse.Namespace) -> tuple[tuple[int, ...], object]:
    """(input size, ModelSummary) of the zoo model named in args at --input or its own size."""
    if args.num_classes is not None and args.num_classes < 1:
        raise CnnkitError(f"--num-classes must be >= 1, got {args.num_classes}")
    size = parse_input_size(args.input) if args.input else None
    model = build_for_analysis(args.name, args.num_classes, size[0] if size else None)
    if size is None:
        size = tuple(model.default_cfg.input_size) if hasattr(model, "default_cfg") else (3, 224, 224)
    return size, summary(model, size, batch_size=args.batch_size)


def _run_summary(args: argparse.Namespace) -> int:
    size, model_summary = _summary_of(args)
    if args.json:
        _print_json({"model": args.name, **summary_json(model_summary)})
        return 0
    print(f"{args.name} at input {'x'.join(map(str, size))}")
    print(format_summary(model_summary))
    return 0


def _run_rf(args: argparse.Namespace) -> int:
    size, model_summary = _summary_of(args)
    points = rf_growth(model_summary)
    if not points:
        raise CnnkitError(f"{args.name} has no conv or pooling layer whose receptive field could be traced")
    if args.plot:
        from cnnkit.analysis.plots import plot_rf_growth

        figure = plot_rf_growth(points, title=f"{args.name} at {'x'.join(map(str, size))}: receptive field")
        figure.tight_layout()
        figure.savefig(args.plot, dpi=120)
    if args.json:
        _print_json({"model": args.name, "input_size": list(size), "layers": rf_growth_json(points)})
        return 0
    print(f"{args.name} at input {'x'.join(map(str, size))}")
    print(format_rf_growth(points))
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0


def _run_conv(args: argparse.Namespace) -> int:
    if args.stack is not None:
        if args.size is not None or args.kernel is not None:
            raise CnnkitError("--stack describes a whole stack: give it without --in and --kernel")
        rows = stack_receptive_fields(parse_stack(args.stack))
        if args.json:
            _print_json(stack_json(rows))
        else:
            print(format_stack(rows))
        return 0
    if args.size is None or args.kernel is None:
        raise CnnkitError("--in and --kernel are required (or --stack for the receptive field of a stack)")
    spec = ConvSpec(
        size=args.size,
        kernel=args.kernel,
        stride=args.stride,
        padding=args.padding,
        dilation=args.dilation,
        groups=args.groups,
        in_channels=args.in_ch,
        out_channels=args.out_ch,
    )
    report = conv_report(spec)
    print(json.dumps(conv_report_json(report), indent=2) if args.json else format_conv_report(report))
    return 0


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="zoo model name (an unknown one lists them all)")
    parser.add_argument("--input", default=None, help="C,H,W input size (default: the model's own)")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the model's own)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size for shapes and memory")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `summary`, `rf` and `conv` sub-commands."""
    parser = subparsers.add_parser("summary", help="layer table of a zoo model: shapes, params, MACs, RF, memory")
    _add_model_arguments(parser)
    parser.set_defaults(func=_run_summary)

    parser = subparsers.add_parser("rf", help="receptive field and jump of a zoo model after each conv/pool layer")
    _add_model_arguments(parser)
    parser.add_argument("--plot", default=None, type=Path, help="write RF growth with depth (log scale) to this PNG")
    parser.set_defaults(func=_run_rf)

    parser = subparsers.add_parser(
        "conv", help="output size, params and MACs of one 2-D convolution, or the receptive field of a stack"
    )
    parser.add_argument("--in", dest="size", type=int, default=None, help="input height = width")
    parser.add_argument("--kernel", type=int, default=None, help="kernel size k")
    parser.add_argument("--stride", type=int, default=1, help="stride s (default 1)")
    parser.add_argument("--padding", type=int, default=0, help="zero padding p on each side (default 0)")
    parser.add_argument("--dilation", type=int, default=1, help="dilation d (default 1)")
    parser.add_argument("--groups", type=int, default=1, help="groups (default 1; the input channels for a depthwise conv)")
    parser.add_argument("--in-ch", type=int, default=1, help="input channels")
    parser.add_argument("--out-ch", type=int, default=1, help="output channels")
    parser.add_argument(
        "--stack", default=None, help='receptive field and jump of a stack instead, e.g. "k7s2,k3s2,k3s1,k3d2"'
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=_run_conv)
