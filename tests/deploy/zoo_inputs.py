"""Small inputs for registry-wide deploy tests: each zoo model at the least size it accepts cheaply."""

from __future__ import annotations

import torch
from torch import nn

# Inception's 5 unpadded reductions and GoogLeNet's stride need more than 64 px; AlexNet at 224 px
# ends on 6x6, which its 6x6 adaptive pool takes as is (any other size needs the slow exporter).
_LARGER = {"inception_v3": 96, "googlenet": 96, "alexnet": 224}
_SMALL_NATIVE = 32  # models made for small inputs (lenet5, mnist_cnn, compact_cnn) keep their own size


def small_input(name: str, model: nn.Module, batch: int, generator: torch.Generator) -> torch.Tensor:
    """A random (batch, C, s, s) input the model accepts, s as small as the model allows."""
    channels, height, _ = model.default_cfg.input_size
    size = height if height <= _SMALL_NATIVE else _LARGER.get(name, 64)
    return torch.randn(batch, channels, size, size, generator=generator)


def settle_batchnorm(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to those of batch `x` (one train-mode pass, then
    eval): a randomly initialised deep net then has logits of order one instead of 1e6, so that a
    relative tolerance means something."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()
