"""Pixel attributions, captum's core set: saliency, SmoothGrad, integrated gradients, occlusion.

Each returns (N, C, H, W) for images (N, C, H, W) and one class per image (`classes` as in
`cnnkit.explain.targets`); the model runs in eval mode, its modes restored, no `.grad` touched.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnkit.errors import CnnkitError
from cnnkit.explain.layers import eval_mode
from cnnkit.explain.targets import Classes, Explainable, class_scores, resolve_classes, unwrap

IG_METHODS = ("riemann_trapezoid", "gausslegendre")


@dataclass(frozen=True)
class IntegratedGradients:
    """`attributions` (N, C, H, W) and the completeness `delta` (N,): sum of the attributions
    minus (f(x) - f(baseline)) for the target class; it shrinks as `steps` grows."""

    attributions: torch.Tensor
    delta: torch.Tensor


def _chunks(total: int, size: int) -> Iterator[slice]:
    """Slices of at most `size` (the `batch_size` argument) covering range(total)."""
    if size < 1:
        raise CnnkitError(f"batch_size must be >= 1, got {size}")
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def _input_gradient(model: torch.nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d logit[target] / d inputs for a batch (B, C, H, W) and targets (B,)."""
    inputs = inputs.detach().clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(class_scores(model(inputs), target).sum(), inputs)
    return gradient


@contextlib.contextmanager
def _prepared(model: Explainable, images: Any, classes: Classes,
              class_names: Sequence[str] | None) -> Iterator[tuple[torch.nn.Module, torch.Tensor, torch.Tensor]]:
    """(module in eval mode with autograd on, a detached copy of the batch, (N,) targets)."""
    module, images, names = unwrap(model, images, class_names)
    with eval_mode(module), torch.inference_mode(False), torch.enable_grad():
        images = images.detach().clone()
        with torch.no_grad():
            targets = resolve_classes(classes, module(images), names)
        yield module, images, targets


def saliency(model: Explainable, images: Any, *, classes: Classes = None, class_names: Sequence[str] | None = None,
             absolute: bool = True) -> torch.Tensor:
    """Simonyan et al. 2014: the gradient of the class logit w.r.t. the input (|.| by default)."""
    with _prepared(model, images, classes, class_names) as (net, batch, targets):
        gradient = _input_gradient(net, batch, targets)
    return gradient.abs() if absolute else gradient


def smoothgrad(model: Explainable, images: Any, *, classes: Classes = None, class_names: Sequence[str] | None = None,
               samples: int = 25, noise: float = 0.15, generator: torch.Generator | None = None,
               absolute: bool = True, batch_size: int = 32) -> torch.Tensor:
    """Smilkov et al. 2017: saliency averaged over `samples` copies of each image plus Gaussian
    noise of standard deviation `noise` (in input units; the paper suggests 10-20% of the input's
    range). Noise is drawn from `generator`, (samples, C, H, W) per image in order."""
    if samples < 1 or noise < 0 or batch_size < 1:
        raise CnnkitError(f"smoothgrad needs samples >= 1, noise >= 0, batch_size >= 1; got {samples}, {noise}, {batch_size}")
    with _prepared(model, images, classes, class_names) as (net, batch, targets):
        maps = []
        for image, target in zip(batch, targets):
            draws = torch.randn((samples, *image.shape), generator=generator, dtype=image.dtype).to(image.device)
            noisy = image[None] + noise * draws
            total = torch.zeros_like(image)
            for part in _chunks(samples, batch_size):
                gradient = _input_gradient(net, noisy[part], target.repeat(part.stop - part.start))
                total += (gradient.abs() if absolute else gradient).sum(dim=0)
            maps.append(total / samples)
    return torch.stack(maps)


def _float32(values: list[float]) -> list[float]:
    return torch.tensor(values, dtype=torch.float32).tolist()


def _quadrature(method: str, steps: int) -> tuple[list[float], list[float]]:
    """(alphas, step sizes) on [0, 1], exactly captum's (captum/attr/_utils/approximation_methods.py,
    captum 0.9.0): "riemann_trapezoid": alphas `torch.linspace(0, 1, steps)` (float32, as captum),
    step sizes 1/steps halved at both ends (they sum to (steps - 1)/steps, so the integral is
    under-weighted by 1/steps and the completeness delta carries that bias, which shrinks as
    steps grow); "gausslegendre": numpy's Gauss-Legendre nodes and weights mapped from [-1, 1]
    to [0, 1] (alphas 0.5 (1 + x_i), step sizes 0.5 w_i). Step sizes are rounded to float32, as
    captum's IntegratedGradients._attribute multiplies by `torch.tensor(step_sizes).float()`."""
    if method == "riemann_trapezoid":
        if steps < 2:
            raise CnnkitError(f"riemann_trapezoid needs steps >= 2, got {steps}")
        step_sizes = [1 / steps] * steps
        step_sizes[0] /= 2
        step_sizes[-1] /= 2
        return torch.linspace(0, 1, steps).tolist(), _float32(step_sizes)
    if method == "gausslegendre":
        if steps < 1:
            raise CnnkitError(f"gausslegendre needs steps >= 1, got {steps}")
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (0.5 * (1 + nodes)).tolist(), _float32((0.5 * weights).tolist())
    raise CnnkitError(f"unknown integration method {method!r}; choose from {', '.join(IG_METHODS)}")


def integrated_gradients(model: Explainable, images: Any, *, classes: Classes = None,
                         class_names: Sequence[str] | None = None, baseline: float | torch.Tensor = 0.0,
                         steps: int = 50, method: str = "gausslegendre", batch_size: int = 32) -> IntegratedGradients:
    """Sundararajan et al. 2017: (x - baseline) * the sum over path points of step size x the
    gradient at baseline + alpha (x - baseline), with captum's alphas and step sizes for `method`
    (see `_quadrature`; captum's default is "gausslegendre"); `batch_size` path points per forward.
    """
    alphas, weights = _quadrature(method, steps)
    with _prepared(model, images, classes, class_names) as (net, batch, targets):
        base = torch.as_tensor(baseline, dtype=batch.dtype, device=batch.device).expand_as(batch)
        total = torch.zeros_like(batch)
        for index, (image, start, target) in enumerate(zip(batch, base, targets)):
            for part in _chunks(steps, batch_size):
                alpha = torch.tensor(alphas[part], dtype=image.dtype, device=image.device)[:, None, None, None]
                weight = torch.tensor(weights[part], dtype=image.dtype, device=image.device)[:, None, None, None]
                path = start + alpha * (image - start)
                gradient = _input_gradient(net, path, target.repeat(len(alpha)))
                total[index] += (weight * gradient).sum(dim=0)
        attributions = total * (batch - base)
        with torch.no_grad():
            gain = class_scores(net(batch), targets) - class_scores(net(base.contiguous()), targets)
    delta = attributions.flatten(1).sum(dim=1) - gain
    return IntegratedGradients(attributions, delta)


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int) or v < 1 for v in pair):
        raise CnnkitError(f"{name} must be a positive int or (height, width), got {value!r}")
    return pair  # type: ignore[return-value]


def occlusion(model: Explainable, images: Any, *, classes: Classes = None, class_names: Sequence[str] | None = None,
              window: int | tuple[int, int] = 8, stride: int | tuple[int, int] = 4, baseline: float = 0.0,
              batch_size: int = 32) -> torch.Tensor:
    """Zeiler & Fergus 2014: the drop of the class logit when a window (all channels) is set to
    `baseline`, averaged over the windows covering each pixel (captum's Occlusion); windows slide
    by `stride` from the top-left corner, ceil((H - window) / stride) + 1 positions per side as
    captum, so the last window may hang over the border (clipped there); with a stride larger
    than the window, pixels no window covers get 0."""
    (wh, ww), (sh, sw) = _pair(window, "window"), _pair(stride, "stride")
    with _prepared(model, images, classes, class_names) as (net, batch, targets), torch.no_grad():
        height, width = batch.shape[-2:]
        if wh > height or ww > width:
            raise CnnkitError(f"window {(wh, ww)} is larger than the images {(height, width)}")
        rows, columns = math.ceil((height - wh) / sh) + 1, math.ceil((width - ww) / sw) + 1
        corners = [(row * sh, column * sw) for row in range(rows) for column in range(columns)]
        result = []
        for image, target in zip(batch, targets):
            reference = class_scores(net(image[None]), target[None])[0]
            total, count = torch.zeros_like(image[0]), torch.zeros_like(image[0])
            for part in _chunks(len(corners), batch_size):
                occluded = image.repeat(part.stop - part.start, 1, 1, 1)
                for row, (y, x) in enumerate(corners[part]):
                    occluded[row, :, y:y + wh, x:x + ww] = baseline
                drops = reference - class_scores(net(occluded), target.repeat(len(occluded)))
                for drop, (y, x) in zip(drops, corners[part]):
                    total[y:y + wh, x:x + ww] += drop
                    count[y:y + wh, x:x + ww] += 1
            result.append((total / count.clamp_min(1)).expand_as(image).clone())
    return torch.stack(result)
