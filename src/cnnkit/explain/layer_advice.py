"""Which map to trust at a run's input size, computed from the model: the default layer's map
resolution and, on small images whose last stage is coarse, LayerCAM at an earlier stage.

Why: a map can only point as finely as its layer's cells. On 32x32 wafer maps the compact CNN's
last stage is 4x4 (one cell per 8x8 dies); there every CAM method's maximum lands on the defect
for fewer than half of the maps, while LayerCAM (Jiang et al. 2021), which keeps each location's positive
gradient instead of averaging over space as Grad-CAM does, at the 16x16 stage `features.2`
points at the defect for most maps (`benchmarks/explain_wafer.py`; figures in
benchmarks/RESULTS.md, quoted in `WAFER_EVIDENCE`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.layers import _HEAD_POOLS, default_layer_name, spatial_layers

COARSE_SIDE = 8  # a last stage with at most this many cells per side is coarse ...
SMALL_INPUT = 64  # ... on inputs whose short side is at most this many pixels
FINE_SIDE = 16  # the earlier stage to use instead: the deepest with at least this many cells per side
WAFER_EVIDENCE = ("measured by benchmarks/explain_wafer.py (compact_cnn trained on 32x32 wafer maps, "
                  "benchmarks/RESULTS.md, 2026-12-02): pointing-game hit rate of LayerCAM at the 16x16 "
                  "stage features.2 0.89, of every CAM method at the 4x4 last stage 0.36-0.40, "
                  "against 0.18 for a centre prior and 0.11 for a random map")


@dataclass(frozen=True)
class LayerAdvice:
    """The map resolution of the default layer for an input of `input_size` (H, W), the deepest
    earlier layer with a finer map (`finer_layer`, None when there is none), and whether the
    input is small with a coarse last stage (then LayerCAM at `finer_layer` is to be trusted)."""

    input_size: tuple[int, int]
    default_layer: str
    default_map: tuple[int, int]
    finer_layer: str | None
    finer_map: tuple[int, int] | None
    small_and_coarse: bool

    @property
    def method(self) -> str:
        return "layercam" if self.small_and_coarse and self.finer_layer else "gradcam"

    @property
    def layer(self) -> str:
        return self.finer_layer if self.small_and_coarse and self.finer_layer else self.default_layer

    def text(self) -> str:
        """The advice in two or three sentences, with the reason."""
        (height, width), (h, w) = self.input_size, self.default_map
        facts = (f"On this run's {height}x{width} inputs the default layer {self.default_layer} gives "
                 f"{h}x{w} cells: each cell covers about {height // h}x{width // w} pixels, and a map cannot "
                 "point more finely than its cells.")
        if self.small_and_coarse and self.finer_layer and self.finer_map:
            fh, fw = self.finer_map
            return (f"{facts} For images this small, trust LayerCAM at {self.finer_layer} ({fh}x{fw}), "
                    f"the deepest stage with at least {FINE_SIDE} cells a side, over Grad-CAM at the last "
                    f"stage, which averages the gradients over space: {WAFER_EVIDENCE}.")
        if self.small_and_coarse:
            return (f"{facts} No earlier layer has a finer map; the map shows at most which {h}x{w} cell "
                    "matters.")
        finer = (f" For details smaller than a cell, LayerCAM at {self.finer_layer} "
                 f"({self.finer_map[0]}x{self.finer_map[1]}) keeps more resolution."
                 if self.finer_layer and self.finer_map else "")
        return f"{facts} Grad-CAM at {self.default_layer} suits objects that span several cells.{finer}"


def advise_layer(model: nn.Module, example: torch.Tensor) -> LayerAdvice:
    """`LayerAdvice` for `model` on inputs shaped like `example` (1, C, H, W), from one no-grad
    trial forward (module docstring)."""
    height, width = example.shape[-2:]
    default = default_layer_name(model, example)
    modules = dict(model.named_modules())
    layers = spatial_layers(model, example)
    maps = {layer.name: (layer.shape[-2], layer.shape[-1]) for layer in layers}
    if default not in maps:
        raise CnnkitError(f"the default layer {default!r} has no (N, C, h, w) output on a {height}x{width} input")
    coarse = min(maps[default])
    # Stages only: at most one level below the default layer's own (`layer1`, `features.2`), so that the
    # first convs of the next stage's first block, still at the finer size before its stride, are
    # not taken for one (`layer2.0.bn1` of a bottleneck ResNet).
    stage_depth = default.count(".") + 1
    finer = [layer.name for layer in layers if layer.calls == 1 and min(maps[layer.name]) > coarse
             and layer.name.count(".") <= stage_depth and not isinstance(modules[layer.name], _HEAD_POOLS)]
    fine_enough = [name for name in finer if min(maps[name]) >= min(FINE_SIDE, height, width)]
    if not fine_enough and finer:  # no map reaches FINE_SIDE: the finest there is, the deepest of those
        finest = max(min(maps[name]) for name in finer)
        fine_enough = [name for name in finer if min(maps[name]) == finest]
    finer_layer = fine_enough[-1] if fine_enough else None
    return LayerAdvice(
        input_size=(height, width), default_layer=default, default_map=maps[default],
        finer_layer=finer_layer, finer_map=maps[finer_layer] if finer_layer else None,
        small_and_coarse=coarse <= COARSE_SIDE and min(height, width) <= SMALL_INPUT,
    )
