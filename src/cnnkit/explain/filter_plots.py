"""PNG views of `cnnkit.explain.filters` results (a matplotlib Figure rendered by Agg: no pyplot state)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cnnkit.explain.filters import FeatureMaps, FilterGrid


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def plot_filters(grid: FilterGrid, path: str | Path) -> Path:
    """Write the filter grid as a PNG: colour patches, or a diverging map (blue < 0 < red)."""
    from matplotlib import colormaps

    figure = _figure(6, 6 * grid.grid.shape[0] / max(grid.grid.shape[1], 1) + 0.6)
    ax = figure.add_subplot()
    if grid.kind == "rgb":
        ax.imshow(grid.grid, interpolation="nearest")
    else:
        cmap = colormaps["RdBu_r"].with_extremes(bad="white")
        image = ax.imshow(np.ma.masked_invalid(grid.grid), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        figure.colorbar(image, ax=ax, fraction=0.046, label="weight / max |weight|")
    ax.set_title(f"{grid.layer}: {grid.rows} x {grid.columns} filters of {grid.kernel[0]}x{grid.kernel[1]}")
    ax.axis("off")
    path = Path(path)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def plot_feature_maps(maps: FeatureMaps, path: str | Path) -> Path:
    """Write the top-k feature maps as a PNG grid, each titled with its channel and mean activation."""
    count = len(maps.channels)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    figure = _figure(2 * columns, 2 * rows + 0.4)
    for index, (channel, picture, activity) in enumerate(zip(maps.channels, maps.maps, maps.activity)):
        ax = figure.add_subplot(rows, columns, index + 1)
        ax.imshow(picture, cmap="viridis", interpolation="nearest")
        ax.set_title(f"ch {channel}: {activity:.2g}", fontsize="small")
        ax.axis("off")
    figure.suptitle(f"{maps.layer}: {count} most active channels")
    path = Path(path)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path
