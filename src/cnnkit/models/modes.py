"""Every module's own train/eval flag, kept across a block that switches modes: a frozen BatchNorm
(cnnkit.train.frozen_norms) stays in eval mode, where `model.train(was_training)` would flip it back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def modes_kept(model: nn.Module) -> Iterator[None]:
    """Restore the train/eval flag of every module of `model` on exit, as it was on entry."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
