"""CLI: `cnnkit summary NAME` (layer table of a zoo model) and `cnnkit conv` (conv arithmetic)."""

from __future__ import annotations

import argparse

import torch
from torch import nn

from cnnkit.analysis.conv_calculator import ConvSpec, conv_report, format_conv_report
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


def build_for_analysis(name: str, num_classes: int, in_chans: int) -> nn.Module:
    """The zoo model built straight on the meta device (no weight init cost), or on CPU if it must."""
    from cnnkit.models.factory import create_model

    try:
        with torch.device("meta"):
            return create_model(name, num_classes=num_classes, in_chans=in_chans)
    except CnnkitError:
        raise
    except (NotImplementedError, RuntimeError):
        # A builder that reads tensor values (e.g. .tolist()) cannot run on meta.
        return create_model(name, num_classes=num_classes, in_chans=in_chans)


def _run_summary(args: argparse.Namespace) -> int:
    if args.num_classes < 1:
        raise CnnkitError(f"--num-classes must be >= 1, got {args.num_classes}")
    size = parse_input_size(args.input) if args.input else None
    model = build_for_analysis(args.name, args.num_classes, size[0] if size else 3)
    if size is None:
        size = tuple(model.default_cfg.input_size) if hasattr(model, "default_cfg") else (3, 224, 224)
    print(f"{args.name} at input {'x'.join(map(str, size))}")
    print(format_summary(summary(model, size, batch_size=args.batch_size)))
    return 0


def _run_conv(args: argparse.Namespace) -> int:
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
    print(format_conv_report(conv_report(spec)))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `summary` and `conv` sub-commands."""
    parser = subparsers.add_parser("summary", help="layer table of a zoo model: shapes, params, MACs, RF, memory")
    parser.add_argument("name", help="zoo model name (see cnnkit.list_models())")
    parser.add_argument("--input", default=None, help="C,H,W input size (default: the model's own)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size for shapes and memory")
    parser.set_defaults(func=_run_summary)

    parser = subparsers.add_parser("conv", help="output size, params and MACs of one 2-D convolution")
    parser.add_argument("--in", dest="size", type=int, required=True, help="input height = width")
    parser.add_argument("--kernel", type=int, required=True, help="kernel size k")
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--padding", type=int, default=0)
    parser.add_argument("--dilation", type=int, default=1)
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--in-ch", type=int, default=1, help="input channels")
    parser.add_argument("--out-ch", type=int, default=1, help="output channels")
    parser.set_defaults(func=_run_conv)
