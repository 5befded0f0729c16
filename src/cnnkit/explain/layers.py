"""Where to look inside a model: the target layer of a map, found by name, module or default.

Default target layer: `model.default_cfg.feature_layer` when the model declares one; otherwise
the last module, in the order modules finish during a trial forward of one image (through
`forward_features` when the model has it), that runs once and outputs a 4-D (N, C, h, w)
tensor, adaptive pooling layers excluded (they are the head's, e.g. ResNet's avgpool).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.modes import modes_kept

_HEAD_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class SpatialLayer:
    """A module whose output in a trial forward was (N, C, h, w); `calls` times it ran."""

    name: str
    shape: tuple[int, ...]
    calls: int


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode inside the block; every module's own train/eval flag restored after."""
    with modes_kept(model):
        yield model.eval()


def spatial_layers(model: nn.Module, example: torch.Tensor) -> list[SpatialLayer]:
    """Modules with a 4-D output in a no-grad trial forward of `example` (N, C, H, W), in the order
    they finished (children before their container); hooks removed even if the forward raises."""
    seen: dict[str, SpatialLayer] = {}
    order: list[str] = []

    def record(name: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            calls = seen[name].calls + 1 if name in seen else 1
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
            seen[name] = SpatialLayer(name, shape, calls)
            if name in order:
                order.remove(name)
            order.append(name)

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules() if name]
    run = getattr(model, "forward_features", model)
    try:
        with eval_mode(model), torch.no_grad():
            run(example)
    finally:
        for handle in handles:
            handle.remove()
    return [seen[name] for name in order if len(seen[name].shape) == 4]


def default_layer_name(model: nn.Module, example: torch.Tensor) -> str:
    """The declared `default_cfg.feature_layer`, else the last once-run 4-D layer (module docstring)."""
    declared = getattr(getattr(model, "default_cfg", None), "feature_layer", "")
    if declared:
        return declared
    modules = dict(model.named_modules())
    candidates = [
        layer for layer in spatial_layers(model, example)
        if layer.calls == 1 and not isinstance(modules[layer.name], _HEAD_POOLS)
    ]
    if not candidates:
        raise CnnkitError(f"{type(model).__name__} has no module with a 4-D (N, C, h, w) output; pass target_layer=")
    return candidates[-1].name


def describe_spatial_layers(model: nn.Module, example: torch.Tensor) -> str:
    """'name (C x h x w), ...' of the layers a map can target (those that run once)."""
    layers = [layer for layer in spatial_layers(model, example) if layer.calls == 1]
    return ", ".join(f"{layer.name} ({'x'.join(map(str, layer.shape[1:]))})" for layer in layers)


def resolve_target_layer(
    model: nn.Module, target_layer: str | nn.Module | None, example: torch.Tensor
) -> tuple[str, nn.Module]:
    """(name, module) of `target_layer`: None for the default, a dotted name, or a submodule."""
    modules = dict(model.named_modules())
    if target_layer is None:
        target_layer = default_layer_name(model, example)
    if isinstance(target_layer, nn.Module):
        names = [name for name, module in modules.items() if module is target_layer]
        if not names:
            raise CnnkitError(f"target_layer {type(target_layer).__name__} is not a submodule of the model")
        return names[0], target_layer
    if target_layer not in modules or not target_layer:
        raise CnnkitError(
            f"unknown target layer {target_layer!r}; layers with a spatial output: "
            f"{describe_spatial_layers(model, example)}"
        )
    return target_layer, modules[target_layer]
