"""`cnnkit data inspect|stats|show PATH`: what a dataset holds, its bad files, its channel statistics.

The summaries are computed as data (`summarize`) and printed by separate formatting functions;
`show` (a grid of samples) is defined beside its rendering code in `cnnkit.data.show`.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from cnnkit.data.dataset import ArrayImageDataset
from cnnkit.data.decode import DEFAULT_MAX_PIXELS
from cnnkit.data.scan import BadFile
from cnnkit.data.show import add_show_parser
from cnnkit.data.sources import DataSource, open_source
from cnnkit.data.stats import ChannelStats, channel_stats


@dataclass
class SizeSummary:
    """Min / median / max of image widths and heights, and how many images have each mode."""

    width: tuple[float, float, float]
    height: tuple[float, float, float]
    modes: dict[str, int]


@dataclass
class SourceSummary:
    """What `cnnkit data inspect` reports: classes, counts per split and class, sizes, bad files."""

    location: str
    format: str
    classes: list[str]
    counts: dict[str, list[int]]
    sizes: SizeSummary | None
    bad_files: list[BadFile] = field(default_factory=list)
    suspects: list[BadFile] = field(default_factory=list)
    ignored_files: int = 0


def summarize(source: DataSource) -> SourceSummary:
    """Counts per split and class, image-size statistics and the bad files of an opened source."""
    counts = {
        split: np.bincount(np.asarray(ds.targets, dtype=np.int64), minlength=len(source.classes)).tolist()
        for split, ds in source.splits.items()
    }
    return SourceSummary(
        location=source.location,
        format=source.format,
        classes=source.classes,
        counts=counts,
        sizes=_size_summary(source),
        bad_files=list(source.bad_files),
        suspects=[s for s in source.suspects if s not in source.bad_files],
        ignored_files=len(source.ignored),
    )


def _size_summary(source: DataSource) -> SizeSummary | None:
    if source.headers:
        widths = np.array([h.width for h in source.headers.values()])
        heights = np.array([h.height for h in source.headers.values()])
        modes = Counter(h.mode for h in source.headers.values())
    else:
        arrays = [ds.images for ds in source.splits.values() if isinstance(ds, ArrayImageDataset)]
        if not arrays:
            return None
        widths = np.concatenate([np.full(len(a), a.shape[3]) for a in arrays])
        heights = np.concatenate([np.full(len(a), a.shape[2]) for a in arrays])
        modes = Counter()
        for array in arrays:
            modes["RGB" if array.shape[1] == 3 else "L"] += len(array)
    spread = lambda v: (float(v.min()), float(np.median(v)), float(v.max()))  # noqa: E731
    return SizeSummary(width=spread(widths), height=spread(heights), modes=dict(sorted(modes.items())))


def format_summary(summary: SourceSummary) -> str:
    """The inspect report as plain text: a class x split table, sizes, then each bad file."""
    splits = list(summary.counts)
    name_width = max([len("class")] + [len(c) for c in summary.classes])
    lines = [
        f"dataset: {summary.location} ({summary.format})",
        f"classes: {len(summary.classes)}",
        "  ".join([f"{'class':<{name_width}}"] + [f"{s:>8}" for s in splits]),
    ]
    for label, name in enumerate(summary.classes):
        lines.append("  ".join([f"{name:<{name_width}}"] + [f"{summary.counts[s][label]:>8}" for s in splits]))
    lines.append("  ".join([f"{'total':<{name_width}}"] + [f"{sum(summary.counts[s]):>8}" for s in splits]))
    if summary.sizes is not None:
        w, h = summary.sizes.width, summary.sizes.height
        lines.append(f"width  min/median/max: {w[0]:g} / {w[1]:g} / {w[2]:g}")
        lines.append(f"height min/median/max: {h[0]:g} / {h[1]:g} / {h[2]:g}")
        lines.append("modes: " + ", ".join(f"{m} {n}" for m, n in summary.sizes.modes.items()))
    if summary.ignored_files:
        lines.append(f"ignored (not an image extension): {summary.ignored_files} files")
    lines.append(f"bad files: {len(summary.bad_files)}")
    lines.extend(f"  {bad.path}: {bad.reason}" for bad in summary.bad_files)
    if summary.suspects:
        lines.append(f"format outliers (readable, kept; --drop-outliers leaves them out): {len(summary.suspects)}")
        lines.extend(f"  {suspect.path}: {suspect.reason}" for suspect in summary.suspects)
    return "\n".join(lines)


def format_stats(stats: ChannelStats, location: str, split: str | None) -> str:
    """Mean and std per channel, in the form Normalize takes them."""
    where = f"{location} [{split}]" if split else location
    mean = ", ".join(f"{m:.4f}" for m in stats.mean)
    std = ", ".join(f"{s:.4f}" for s in stats.std)
    return f"{where}: {stats.count} pixels per channel\nmean = ({mean})\nstd  = ({std})"


def _open(args: argparse.Namespace) -> DataSource:
    return open_source(
        args.path,
        max_pixels=args.max_pixels,
        workers=args.workers,
        scan_cache=args.cache,
        allow_empty=args.allow_empty,
        drop_format_outliers=args.drop_outliers,
    )


def run_inspect(args: argparse.Namespace) -> int:
    """The `cnnkit data inspect` command: the summary as text or JSON; 0 when the data could be read."""
    summary = summarize(_open(args))
    print(json.dumps(asdict(summary), indent=1) if args.json else format_summary(summary))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """The `cnnkit data stats` command: per-channel mean/std of one split (train when given)."""
    source = _open(args)
    split = args.split if args.split is not None else ("train" if "train" in source.splits else None)
    stats = channel_stats(source.nonempty(split), max_items=args.max_items)
    print(json.dumps(asdict(stats)) if args.json else format_stats(stats, source.location, split))
    return 0


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse names the option in its error)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="image folder, IDX or CIFAR folder, .npz file, or 'wafer'")
    parser.add_argument(
        "--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (checked from the header)"
    )
    parser.add_argument("--workers", type=positive_int, default=None, help="threads for the bad-file scan")
    parser.add_argument("--cache", default=None, help="JSON file caching the scan between runs")
    parser.add_argument("--allow-empty", action="store_true", help="accept empty class folders")
    parser.add_argument(
        "--drop-outliers", action="store_true",
        help="leave out readable files in a format almost absent from the set (listed as suspects either way)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cnnkit data` and its sub-commands."""
    parser = subparsers.add_parser("data", help="inspect datasets, find bad files, compute statistics")
    data_subparsers = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    inspect = data_subparsers.add_parser("inspect", help="classes, counts per split, image sizes and bad files")
    _add_source_options(inspect)
    inspect.set_defaults(func=run_inspect)
    stats = data_subparsers.add_parser("stats", help="per-channel mean and std in [0, 1] (one streaming pass)")
    _add_source_options(stats)
    stats.add_argument("--split", default=None, help="split to measure (default: train when there is one)")
    stats.add_argument("--max-items", type=positive_int, default=None, help="measure only the first items")
    stats.set_defaults(func=run_stats)
    add_show_parser(data_subparsers)
