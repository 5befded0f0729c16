"""Small inputs for registry-wide deploy tests: each zoo model at the least size it accepts cheaply."""

from __future__ import annotations

import torch
from torch import nn

# Inception's 5 unpadded reductions and GoogLeNet's stride need more than 64 px; AlexNet at 224 px
# ends on 6x6, which its 6x6 adaptive pool takes as is (any other size needs the slow exporter).
_LARGER = {"inception_v3": 96, "googlenet": 96, "alexnet": 224}
_SMALL_NATIVE = 32  # models made for small inputs (lenet5, mnist_cnn, compact_cnn) keep their own size


def zoo_params() -> list[str]:
    """Every registered model, the largest included (in the default run: on 2026-12-02 the fold and
    export tests of the 19 largest took 2 min with `-n 2` on 2 cores; the slowest five, the exports
    of convnext_large, vgg11, vgg13, vgg16 and vgg16_bn, 16-22 s each)."""
    from cnnkit.models.factory import list_models

    return list_models()


def small_input(name: str, model: nn.Module, batch: int, generator: torch.Generator) -> torch.Tensor:
    """An image-like random (batch, C, s, s) input the model accepts, s as small as the model allows:
    a smooth field (6x6 Gaussian noise, bilinear upsampled), each image with its own contrast and
    brightness, plus fine noise. White noise would not do: to a deep net all white-noise images look
    alike, so BatchNorm statistics taken from them (`settle_batchnorm`) divide a mean-dominated
    activation by a tiny spread across images and amplify float32 rounding (inception_v3 at 96 px:
    |ONNX - torch| up to 1.1x the allowed 1e-4 + 1e-3·|logit| when settled on 32 white-noise images,
    0.1x with these)."""
    channels, height, _ = model.default_cfg.input_size
    size = height if height <= _SMALL_NATIVE else _LARGER.get(name, 64)
    low = torch.randn(batch, channels, 6, 6, generator=generator)
    field = nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    contrast = 0.5 + torch.rand(batch, 1, 1, 1, generator=generator)
    brightness = 0.5 * torch.randn(batch, 1, 1, 1, generator=generator)
    return field * contrast + brightness + 0.1 * torch.randn(batch, channels, size, size, generator=generator)


def settle_batchnorm(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to those of batch `x` (one train-mode pass, then
    eval), each variance raised to at least its layer's mean: a randomly initialised deep net then
    has logits of order one instead of 1e6, and no near-constant channel of a tiny late feature
    map (a variance from a handful of values) amplifies float32 rounding 1e4-fold, so that a
    relative tolerance means what it does on a trained model."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    model.train()
    with torch.no_grad():
        model(x)
        for m in norms:
            m.running_var.clamp_(min=float(m.running_var.mean()))
    return model.eval()
