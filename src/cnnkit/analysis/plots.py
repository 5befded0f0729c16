"""Matplotlib views of analysis results (kept apart so computing never imports matplotlib)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnkit.analysis.effective_rf import EffectiveRF

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
