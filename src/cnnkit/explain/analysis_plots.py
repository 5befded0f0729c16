"""Matplotlib views of error analysis and calibration (computing never imports matplotlib).

Each function returns a Figure (no pyplot, so no global backend or figure state); `png_bytes`
renders one for a file or an HTML data: URL.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from cnnkit.explain.calibration import ReliabilityBins
from cnnkit.explain.error_analysis import row_normalised

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def png_bytes(figure: Figure, *, dpi: int = 100) -> bytes:
    """The figure rendered by Agg as PNG bytes (for embedding in the HTML report)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_png(figure: Figure, path: str | Path, *, dpi: int = 100) -> None:
    """Write the figure as a PNG file at `path`."""
    Path(path).write_bytes(png_bytes(figure, dpi=dpi))


def literal(text: str) -> str:
    """`text` drawn as written: a user's `$` is escaped, or matplotlib reads `$...$` in a class or
    file name as mathtext (and a malformed one fails the whole figure at save)."""
    return text.replace("$", r"\$")


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_confusion(confusion: torch.Tensor, class_names: Sequence[str]) -> Figure:
    """Counts (left) and row-normalised shares (right; the diagonal is per-class recall)."""
    k = len(class_names)
    side = min(4.0 + 0.45 * k, 14.0)
    figure = _new_figure(2 * side, side)
    annotate = k <= 20
    for axis, values, title, fmt in zip(
        figure.subplots(1, 2), (confusion.double().numpy(), row_normalised(confusion).numpy()),
        ("counts", "row-normalised (recall on the diagonal)"), ("{:.0f}", "{:.2f}")
    ):
        image = axis.imshow(values, cmap="Blues", vmin=0, vmax=max(float(values.max()), 1e-12))
        axis.set(title=title, xlabel="predicted", ylabel="true", xticks=range(k), yticks=range(k))
        axis.set_xticklabels([literal(name) for name in class_names], rotation=90 if k > 4 else 0)
        axis.set_yticklabels([literal(name) for name in class_names])
        figure.colorbar(image, ax=axis, fraction=0.046)
        if annotate:
            threshold = values.max() / 2
            for (t, p), value in np.ndenumerate(values):
                axis.text(p, t, fmt.format(value), ha="center", va="center", fontsize=8,
                          color="white" if value > threshold else "black")
    return figure


def _shown_bins(bins: ReliabilityBins) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean confidence, accuracy, share of samples) per drawn bin: the bin of confidence exactly 1
    merged into the last one [1 - 1/bins, 1], so saturated predictions appear in the curve too."""
    counts = bins.counts.numpy().copy()
    sums = [(bins.confidence.numpy() * counts).copy(), (bins.accuracy.numpy() * counts).copy()]
    for values in (counts, *sums):
        values[-2] += values[-1]
    kept = np.maximum(counts[:-1], 1)
    return sums[0][:-1] / kept, sums[1][:-1] / kept, counts[:-1] / max(counts[:-1].sum(), 1)


def plot_reliability(curves: Mapping[str, ReliabilityBins]) -> Figure:
    """Reliability diagram (accuracy against mean confidence per bin, the diagonal is perfect
    calibration) over the confidence histogram, one line per labelled set of bins."""
    figure = _new_figure(6.0, 6.5)
    diagram, histogram = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    diagram.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    edges = next(iter(curves.values())).edges.numpy()
    width = np.diff(edges)
    offsets = np.linspace(0, 1, len(curves) + 2)[1:-1]
    for (label, bins), offset in zip(curves.items(), offsets):
        confidence, accuracy, share = _shown_bins(bins)
        filled = share > 0
        diagram.plot(confidence[filled], accuracy[filled], marker="o", label=label)
        histogram.bar(edges[:-1] + width * (offset - 0.5 / len(curves)), share, width=width / len(curves),
                      align="edge", label=label)
    diagram.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="reliability diagram")
    diagram.legend(loc="upper left")
    histogram.set(xlabel="confidence (top-1 probability)", ylabel="share of samples")
    return figure


def plot_learning_curves(rows: Sequence[Mapping[str, str]]) -> Figure:
    """Losses (left) and accuracies (right) per epoch from metrics.csv rows."""
    figure = _new_figure(10.0, 3.8)
    losses, accuracies = figure.subplots(1, 2)
    epochs = [int(row["epoch"]) + 1 for row in rows]
    columns = [name for name in rows[0] if name != "epoch"] if rows else []
    for name in columns:
        values = [float(row[name]) if row.get(name) not in (None, "") else np.nan for row in rows]
        if name.endswith("_loss"):
            losses.plot(epochs, values, marker="o", label=name)
        elif name.endswith("_top1"):
            accuracies.plot(epochs, values, marker="o", label=name)
    losses.set(xlabel="epoch", ylabel="loss", title="loss")
    accuracies.set(xlabel="epoch", ylabel="top-1 accuracy", title="accuracy", ylim=(0, 1))
    from matplotlib.ticker import MaxNLocator

    for axis in (losses, accuracies):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axis.lines:
            axis.legend()
    return figure


def plot_gallery(images: Sequence[np.ndarray], captions: Sequence[str], *, columns: int = 4,
                 tile: float = 2.2) -> Figure:
    """A grid of uint8 (H, W, 3) images, each with a caption above it."""
    rows = max(1, -(-len(images) // columns))
    figure = _new_figure(columns * tile, rows * (tile + 0.45))
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axis in axes:
        axis.axis("off")
    for axis, image, caption in zip(axes, images, captions):
        axis.imshow(image, interpolation="nearest")
        axis.set_title(literal(caption), fontsize=8)
    return figure
