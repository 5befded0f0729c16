"""What a layer has learned: its filters as an image grid, and its feature maps for one image.

RGB first-layer filters become colour patches (each min-max scaled on its own, as in Krizhevsky
et al. 2012's figure); other filters are shown per input channel in a diverging scale shared by
the whole layer (so magnitudes compare), in [-1, 1]. Arrays only; PNGs in `filter_plots`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.hooks import capture_output
from cnnkit.explain.layers import eval_mode, resolve_target_layer


@dataclass(frozen=True)
class FilterGrid:
    """`grid`: (H, W, 3) in [0, 1] for kind "rgb", (H, W) in [-1, 1] with NaN gaps for
    "diverging"; `rows` x `columns` tiles of `kernel` (kh, kw) pixels, 1-pixel gaps."""

    layer: str
    kind: Literal["rgb", "diverging"]
    grid: np.ndarray
    rows: int
    columns: int
    kernel: tuple[int, int]


@dataclass(frozen=True)
class FeatureMaps:
    """The `top_k` most active channels of `layer` for one image: `channels` (k,), their `maps`
    (k, h, w) and mean activations `activity` (k,), most active first."""

    layer: str
    channels: np.ndarray
    maps: np.ndarray
    activity: np.ndarray


def first_conv_name(model: nn.Module) -> str:
    """`default_cfg.first_conv` when it names a Conv2d, else the first Conv2d registered."""
    modules = dict(model.named_modules())
    declared = getattr(getattr(model, "default_cfg", None), "first_conv", "")
    if isinstance(modules.get(declared), nn.Conv2d):
        return declared
    for name, module in modules.items():
        if isinstance(module, nn.Conv2d):
            return name
    raise CnnkitError(f"{type(model).__name__} has no Conv2d layer")


def _conv(model: nn.Module, layer: str | None) -> tuple[str, nn.Conv2d]:
    name = first_conv_name(model) if layer is None else layer
    module = dict(model.named_modules()).get(name)
    if not isinstance(module, nn.Conv2d):
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        raise CnnkitError(f"{name!r} is not a Conv2d of the model; conv layers: {', '.join(convs)}")
    return name, module


def _tile(tiles: np.ndarray, rows: int, columns: int, fill: float) -> np.ndarray:
    """tiles (rows * columns, kh, kw[, 3]) -> one image with 1-pixel `fill` gaps."""
    kh, kw = tiles.shape[1:3]
    shape = (rows * (kh + 1) - 1, columns * (kw + 1) - 1, *tiles.shape[3:])
    grid = np.full(shape, fill, dtype=np.float64)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        grid[row * (kh + 1):row * (kh + 1) + kh, column * (kw + 1):column * (kw + 1) + kw] = tile
    return grid


def filter_grid(model: nn.Module, layer: str | None = None, *, max_filters: int = 64,
                max_channels: int = 16) -> FilterGrid:
    """The filters of conv `layer` (default: the first conv) as one grid image (module docstring):
    RGB-input filters as colour patches in a square grid; otherwise one row per output filter
    (up to `max_filters`), one column per input channel (up to `max_channels`), or a square
    grid when there is one input channel (per group)."""
    if max_filters < 1 or max_channels < 1:
        raise CnnkitError(f"max_filters and max_channels must be >= 1, got {max_filters} and {max_channels}")
    name, conv = _conv(model, layer)
    weight = conv.weight.detach().cpu().double().numpy()[:max_filters]
    count, channels, kh, kw = weight.shape
    if channels == 3:
        low = weight.min(axis=(1, 2, 3), keepdims=True)
        span = weight.max(axis=(1, 2, 3), keepdims=True) - low
        patches = np.moveaxis((weight - low) / np.where(span > 0, span, 1), 1, -1)
        columns = math.ceil(math.sqrt(count))
        rows = math.ceil(count / columns)
        padded = np.concatenate([patches, np.ones((rows * columns - count, kh, kw, 3))])
        return FilterGrid(name, "rgb", _tile(padded, rows, columns, 1.0), rows, columns, (kh, kw))
    scale = np.abs(weight).max() or 1.0
    kernels = weight[:, :max_channels] / scale
    if channels == 1:
        columns = math.ceil(math.sqrt(count))
        rows = math.ceil(count / columns)
        tiles = np.concatenate([kernels[:, 0], np.full((rows * columns - count, kh, kw), np.nan)])
    else:
        rows, columns = count, kernels.shape[1]
        tiles = kernels.reshape(-1, kh, kw)
    return FilterGrid(name, "diverging", _tile(tiles, rows, columns, np.nan), rows, columns, (kh, kw))


def feature_maps(model: nn.Module, image: torch.Tensor, layer: str | nn.Module | None = None, *,
                 top_k: int = 16) -> FeatureMaps:
    """Output of `layer` (default: the CAM default layer) for one image (C, H, W) or (1, C, H, W),
    its `top_k` channels by mean activation."""
    batch = image[None] if image.ndim == 3 else image
    if batch.ndim != 4 or batch.shape[0] != 1:
        raise CnnkitError(f"image must be (C, H, W) or (1, C, H, W), got {tuple(image.shape)}")
    if top_k < 1:
        raise CnnkitError(f"top_k must be >= 1, got {top_k}")
    name, module = resolve_target_layer(model, layer, batch)
    with eval_mode(model), torch.no_grad(), capture_output(module, name, gradients=False) as capture:
        model(batch)
    activation = capture.output()[0].double().cpu()
    activity = activation.mean(dim=(1, 2))
    order = torch.argsort(activity, descending=True, stable=True)[:top_k]
    return FeatureMaps(name, order.numpy(), activation[order].numpy(), activity[order].numpy())
