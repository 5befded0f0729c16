"""Filter grids, feature maps, their PNGs, and the overlay picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.filter_plots import plot_feature_maps, plot_filters
from cnnkit.explain.filters import feature_maps, filter_grid, first_conv_name
from cnnkit.explain.overlay import overlay
from explain.reference_models import compact_input, filled

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_rgb_first_layer_filters_are_min_max_scaled_colour_patches(tmp_path):
    conv = nn.Conv2d(3, 5, 2)
    model = nn.Sequential(conv, nn.ReLU())
    grid = filter_grid(model)
    assert (grid.layer, grid.kind, grid.rows, grid.columns, grid.kernel) == ("0", "rgb", 2, 3, (2, 2))
    assert grid.grid.shape == (2 * 3 - 1, 3 * 3 - 1, 3)
    w = conv.weight.detach().double().numpy()
    second = (w[1] - w[1].min()) / (w[1].max() - w[1].min())
    np.testing.assert_allclose(grid.grid[0:2, 3:5], np.moveaxis(second, 0, -1))
    assert (grid.grid[2] == 1).all()  # the white gap row
    path = plot_filters(grid, tmp_path / "filters.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_other_filters_by_channel_in_one_diverging_scale(tmp_path):
    model = filled("compact_cnn")
    assert first_conv_name(model) == "features.0.0"
    grey = filter_grid(model)
    assert grey.kind == "diverging" and (grey.rows, grey.columns) == (6, 6)  # 32 filters, square grid
    assert np.nanmax(np.abs(grey.grid)) == pytest.approx(1.0)
    deeper = filter_grid(model, "features.2.0", max_filters=8, max_channels=4)
    w = model.features[2][0].weight.detach().numpy()
    assert (deeper.rows, deeper.columns) == (8, 4)
    np.testing.assert_allclose(deeper.grid[4:7, 8:11], w[1, 2] / np.abs(w[:8]).max())
    assert np.isnan(deeper.grid[3]).all()
    assert plot_filters(deeper, tmp_path / "deeper.png").read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(CnnkitError, match="not a Conv2d.*features.0.0"):
        filter_grid(model, "features.1")
    for limits in ({"max_filters": 0}, {"max_channels": 0}):  # ZeroDivisionError / ValueError before
        with pytest.raises(CnnkitError, match="max_filters and max_channels must be >= 1"):
            filter_grid(model, "features.2.0", **limits)


def test_feature_maps_are_the_layer_output_ranked_by_mean_activation(tmp_path):
    model = filled("compact_cnn")
    image = compact_input()[0]
    result = feature_maps(model, image, "features.2", top_k=5)
    with torch.no_grad():
        expected = model.features[:3](image[None])[0]
    means = expected.mean(dim=(1, 2))
    assert result.channels.tolist() == torch.argsort(means, descending=True)[:5].tolist()
    np.testing.assert_allclose(result.maps, expected[result.channels].numpy())
    assert (np.diff(result.activity) <= 0).all()
    assert plot_feature_maps(result, tmp_path / "maps.png").read_bytes()[:8] == PNG_SIGNATURE


def test_overlay_blends_the_colormap_over_the_image():
    from matplotlib import colormaps

    image = np.zeros((2, 3), dtype=np.uint8)
    image[0, 0] = 255
    cam = np.array([[0.0, 0.5, 1.0], [1.0, 0.25, 0.0]])
    result = overlay(image, cam, alpha=0.4)
    expected = 0.6 * (image[..., None] / 255.0) + 0.4 * colormaps["jet"](cam)[..., :3]
    assert result.dtype == np.uint8 and result.shape == (2, 3, 3)
    np.testing.assert_array_equal(result, np.round(expected * 255).astype(np.uint8))
    chw = overlay(torch.rand(3, 2, 3), torch.from_numpy(cam), colormap="viridis")
    assert chw.shape == (2, 3, 3)
    with pytest.raises(CnnkitError, match="differs from the image"):
        overlay(image, cam[:, :2])
    with pytest.raises(CnnkitError, match="unknown matplotlib colormap"):
        overlay(image, cam, colormap="nope")
