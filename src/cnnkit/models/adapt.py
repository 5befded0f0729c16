"""Adapt a zoo model's two ends: a new classifier for another label set, and a first conv for
another number of input channels (timm's `adapt_input_conv`).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from cnnkit.models.base import DefaultCfg


def model_cfg(model: nn.Module) -> DefaultCfg:
    """The model's `default_cfg`; a ValueError names the model class when it has none."""
    cfg = getattr(model, "default_cfg", None)
    if not isinstance(cfg, DefaultCfg):
        raise ValueError(f"{type(model).__name__} has no DefaultCfg `default_cfg` (not a cnnkit zoo model)")
    return cfg


def module_at(model: nn.Module, path: str, expected: tuple[type[nn.Module], ...]) -> nn.Module:
    """The submodule at dotted `path`, checked to be one of `expected` (ValueError otherwise)."""
    try:
        module = model.get_submodule(path)
    except AttributeError as error:
        raise ValueError(f"{type(model).__name__} has no module {path!r}: {error}") from error
    if not isinstance(module, expected):
        names = " or ".join(t.__name__ for t in expected)
        raise ValueError(f"{type(model).__name__}.{path} is a {type(module).__name__}, expected {names}")
    return module


def new_classifier(
    old: nn.Linear | nn.Conv2d, num_classes: int, *, generator: torch.Generator | None = None
) -> nn.Module:
    """A layer like `old` with `num_classes` outputs, PyTorch's default init U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    factory = {"device": old.weight.device, "dtype": old.weight.dtype}
    if isinstance(old, nn.Linear):
        layer: nn.Linear | nn.Conv2d = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, **factory)
    else:
        layer = nn.Conv2d(
            old.in_channels, num_classes, old.kernel_size, old.stride, old.padding,
            dilation=old.dilation, bias=old.bias is not None, **factory,
        )
    bound = 1.0 / math.sqrt(math.prod(layer.weight.shape[1:]))
    with torch.no_grad():
        for tensor in (layer.weight, layer.bias):
            if tensor is not None:
                nn.init.uniform_(tensor, -bound, bound, generator=generator)
    return layer


def reset_classifier(model: nn.Module, num_classes: int, *, generator: torch.Generator | None = None) -> nn.Module:
    """Replace the classifier at `default_cfg.classifier` by a fresh one with `num_classes` outputs.

    Modifies `model` in place (also its `default_cfg.num_classes`) and returns it; used for
    fine-tuning. `generator` makes the new weights reproducible.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    cfg = model_cfg(model)
    old = module_at(model, cfg.classifier, (nn.Linear, nn.Conv2d))
    model.set_submodule(cfg.classifier, new_classifier(old, num_classes, generator=generator))
    model.default_cfg = dataclasses.replace(cfg, num_classes=num_classes)
    return model


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-conv weight (O, I, kh, kw) for `in_chans` inputs instead of I (timm's rule).

    1 channel: sum over the input channels (a grey image repeated to RGB gives the same output);
    I = 3 to any other count: repeat RGB cyclically and scale by 3 / in_chans, so the response
    to a constant image keeps its size.
    """
    if weight.ndim != 4:
        raise ValueError(f"expected a conv weight (O, I, kh, kw), got shape {tuple(weight.shape)}")
    weight_chans = weight.shape[1]
    if in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    if in_chans == weight_chans:
        return weight.clone()
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    if weight_chans != 3:
        raise ValueError(f"cannot adapt a {weight_chans}-channel conv weight to {in_chans} channels (only from 3)")
    repeats = math.ceil(in_chans / 3)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (3.0 / in_chans)
