"""Adapt a zoo model's input end: a first conv for another number of input channels (timm's
`adapt_input_conv`); the classifier end is `ClassifierModel.reset_classifier`.
"""

from __future__ import annotations

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
