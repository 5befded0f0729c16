"""Class activation maps: Grad-CAM and its family, as one function `cam`.

Every method weighs the target layer's activations A (N, C, h, w) into a map (N, h, w), then
(with `normalize=True`, pytorch-grad-cam's recipe) applies ReLU, min-max, bilinear upsampling
(align_corners=False) to the input size and min-max again, per image. `normalize=False` returns
the raw signed map upsampled: negative values show counter-evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError
from cnnkit.explain.hooks import NotAFeatureMap, capture_output
from cnnkit.explain.layers import describe_spatial_layers, eval_mode, resolve_target_layer
from cnnkit.explain.targets import Classes, Explainable, class_scores, resolve_classes, unwrap

MINMAX_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image


def _gradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Selvaraju et al. 2017: channel weights = spatial mean of the gradients."""
    return (g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1)


def _gradcam_plus_plus(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Chattopadhay et al. 2018, eq. 19 with exp(score) gradients (pytorch-grad-cam's form)."""
    g2 = g.pow(2)
    alpha = g2 / (2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g + 1e-6)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (g.clamp_min(0) * alpha).sum(dim=(2, 3), keepdim=True)
    return (weights * a).sum(dim=1)


def _hirescam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Draelos & Carin 2020: element-wise gradient x activation, summed over channels."""
    return (g * a).sum(dim=1)


def _xgradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Fu et al. 2020: weights = sum of gradient x activation / sum of activation."""
    weights = (g * a / (a.sum(dim=(2, 3), keepdim=True) + 1e-7)).sum(dim=(2, 3), keepdim=True)
    return (weights * a).sum(dim=1)


def _layercam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Jiang et al. 2021: positive gradients weigh each location."""
    return (g.clamp_min(0) * a).sum(dim=1)


def _eigencam(a: torch.Tensor) -> torch.Tensor:
    """Muhammad & Yeasin 2020: projection of the centred activations on their first principal
    component; its sign is fixed so that |max| >= |min| (Chung & Ying 2025, Seg-Eigen-CAM eq. 13)."""
    maps = []
    for activation in a:
        x = activation.flatten(1).T
        x = x - x.mean(dim=0)
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        projection = (x @ vh[0]).reshape(activation.shape[1:])
        if projection.min().abs() > projection.max().abs():
            projection = -projection
        maps.append(projection)
    return torch.stack(maps)


GRADIENT_METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam": _gradcam,
    "gradcam++": _gradcam_plus_plus,
    "hirescam": _hirescam,
    "xgradcam": _xgradcam,
    "layercam": _layercam,
}
CAM_METHODS: tuple[str, ...] = (*GRADIENT_METHODS, "eigencam", "scorecam")


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    shifted = maps - flat.min(dim=1).values[:, None, None]
    return shifted / (MINMAX_EPS + shifted.flatten(1).max(dim=1).values[:, None, None])


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def finish_map(raw: torch.Tensor, size: tuple[int, int], *, normalize: bool) -> torch.Tensor:
    """(N, h, w) layer map -> (N, H, W): ReLU + min-max + upsample + min-max, or just upsample."""
    if not normalize:
        return _upsample(raw, size)
    return _minmax(_upsample(_minmax(raw.clamp_min(0)), size))


def _scorecam_weights(
    model: torch.nn.Module, images: torch.Tensor, a: torch.Tensor, targets: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Wang et al. 2020: softmax over channels of the target logit of the input masked by each
    channel's min-max scaled, upsampled activation (align_corners=True, as pytorch-grad-cam).
    Masked inputs go through the model `batch_size` at a time; returns (N, C, 1, 1)."""
    weights = []
    for image, activation, target in zip(images, a, targets):
        masks = F.interpolate(activation[None], size=image.shape[-2:], mode="bilinear", align_corners=True)[0]
        flat = masks.flatten(1)
        low, high = flat.min(dim=1).values[:, None, None], flat.max(dim=1).values[:, None, None]
        masks = (masks - low) / (high - low + 1e-8)
        scores = []
        for start in range(0, len(masks), batch_size):
            masked = image[None] * masks[start:start + batch_size, None]
            scores.append(model(masked)[:, int(target)])
        weights.append(torch.cat(scores).softmax(dim=0))
    return torch.stack(weights)[:, :, None, None]


def cam(
    model: Explainable,
    images: Any,
    *,
    method: str = "gradcam",
    target_layer: str | torch.nn.Module | None = None,
    classes: Classes = None,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    batch_size: int = 32,
) -> torch.Tensor:
    """Class activation maps (N, H, W) of `images` (N, C, H, W) for `classes` (module docstring).

    `model`: an nn.Module returning logits, or a Predictor (then images may be paths or PIL).
    `target_layer`: None (see `cnnkit.explain.layers`), a dotted module name or the module.
    `batch_size`: masked inputs per forward for `scorecam`. The model runs in eval mode; its
    modes are restored afterwards.
    """
    raw, size = layer_map(model, images, method=method, target_layer=target_layer, classes=classes,
                          class_names=class_names, batch_size=batch_size)
    return finish_map(raw, size, normalize=normalize)


def layer_map(model: Explainable, images: Any, *, method: str = "gradcam",
              target_layer: str | torch.nn.Module | None = None, classes: Classes = None,
              class_names: Sequence[str] | None = None, batch_size: int = 32) -> tuple[torch.Tensor, tuple[int, int]]:
    """`cam`'s map at the layer's own resolution (N, h, w), before `finish_map`, and the (H, W) it
    is finished to: one pass serves both the shown map and the signed raw one."""
    if method not in CAM_METHODS:
        raise CnnkitError(f"unknown CAM method {method!r}; choose from {', '.join(CAM_METHODS)}")
    if batch_size < 1:
        raise CnnkitError(f"batch_size must be >= 1, got {batch_size}")
    module, images, names = unwrap(model, images, class_names)
    name, layer = resolve_target_layer(module, target_layer, images[:1])
    try:
        raw = _layer_map(module, images, layer, name, method=method, classes=classes, names=names,
                         batch_size=batch_size)
    except NotAFeatureMap as error:
        raise CnnkitError(f"{error}; layers with a spatial output: {describe_spatial_layers(module, images[:1])}") from error
    return raw.detach(), (int(images.shape[-2]), int(images.shape[-1]))


def _layer_map(module: torch.nn.Module, images: torch.Tensor, layer: torch.nn.Module, name: str, *, method: str,
               classes: Classes, names: tuple[str, ...] | None, batch_size: int) -> torch.Tensor:
    """The `method` map (N, h, w) at `layer`, before ReLU, normalisation and upsampling."""
    uses_gradients = method in GRADIENT_METHODS
    with eval_mode(module), torch.inference_mode(False), torch.enable_grad():
        # A fresh leaf that requires grad: the layer's output joins the autograd graph even when
        # every parameter is frozen (no requires_grad flag is changed), and a batch made under
        # torch.inference_mode can enter autograd.
        images = images.detach().clone().requires_grad_(uses_gradients)
        with capture_output(layer, name, gradients=uses_gradients) as capture:
            logits = module(images)
            activation = capture.output()
            targets = resolve_classes(classes, logits.detach(), names)
            if uses_gradients:
                gradient = capture.backward(class_scores(logits, targets).sum())
        if uses_gradients:
            raw = GRADIENT_METHODS[method](activation, gradient)
        elif method == "eigencam":
            raw = _eigencam(activation)
        else:
            with torch.no_grad():
                weights = _scorecam_weights(module, images.detach(), activation, targets, batch_size)
            raw = (weights * activation).sum(dim=1)
    return raw
