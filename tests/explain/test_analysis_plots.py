"""The analysis figures draw user-named classes and files as written (no mathtext from a `$`)."""

from __future__ import annotations

import numpy as np
import torch

from cnnkit.explain.analysis_plots import plot_confusion, plot_gallery, png_bytes


def test_names_with_dollar_signs_are_drawn_as_written() -> None:
    names = [r"$\frac{$", "price $5-$10", "plain"]
    figure = plot_confusion(torch.tensor([[3, 1, 0], [0, 2, 1], [1, 0, 4]]), names)
    assert png_bytes(figure).startswith(b"\x89PNG"), "a malformed $...$ no longer fails the figure"
    axis = figure.axes[0]
    assert [label.get_text() for label in axis.get_yticklabels()] == [n.replace("$", r"\$") for n in names]
    gallery = plot_gallery([np.zeros((4, 4, 3), np.uint8)], [r"$x^$ true edge, predicted $\alpha"])
    assert png_bytes(gallery).startswith(b"\x89PNG")
