"""Matplotlib views of analysis results (kept apart so computing never imports matplotlib)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnkit.analysis.effective_rf import EffectiveRF
from cnnkit.analysis.rf_growth import RFPoint

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def plot_effective_rf(erf: EffectiveRF, ax: Axes | None = None) -> Figure:
    """Heat map of the ERF gradient with its mass-fraction disc and the theoretical RF box."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    if ax is None:
        figure, ax = plt.subplots(figsize=(5, 5))
    else:
        figure = ax.figure
    image = ax.imshow(erf.gradient.numpy(), cmap="viridis")
    figure.colorbar(image, ax=ax, fraction=0.046, label="share of |gradient|")
    row, col = erf.centre
    ax.add_patch(Circle((col, row), erf.radius, fill=False, color="white", linestyle="--",
                        label=f"{erf.mass_fraction:.0%} of mass (r={erf.radius:.1f})"))
    rf_h, rf_w = erf.theoretical_rf
    ax.add_patch(Rectangle((col - (rf_w - 1) / 2, row - (rf_h - 1) / 2), rf_w - 1, rf_h - 1, fill=False,
                           color="red", label=f"theoretical RF {rf_h}x{rf_w}"))
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title("Effective receptive field")
    return figure


def plot_rf_growth(points: tuple[RFPoint, ...], title: str = "", ax: Axes | None = None) -> Figure:
    """Receptive field (log scale) against depth, one marker per conv/pool call; strides bend the curve."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    if ax is None:
        figure = Figure(figsize=(7, 4))
        ax = figure.subplots()
    else:
        figure = ax.figure
    ax.plot([p.depth for p in points], [p.rf for p in points], marker=".", label="receptive field")
    jumps = [float(p.jump) for p in points]  # a Fraction after an enlarging adaptive pool
    ax.plot([p.depth for p in points], jumps, linestyle="--", label="jump (cumulative stride)")
    ax.set_yscale("log")
    ax.set_xlabel("depth (conv and pooling layers, in execution order)")
    ax.set_ylabel("input pixels")
    ax.set_title(title or "Receptive-field growth with depth")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return figure
