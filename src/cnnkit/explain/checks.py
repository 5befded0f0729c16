"""Is an explanation right? Localisation against ground-truth masks and faithfulness curves.

- `pointing_game` (Zhang et al. 2016): does each map's maximum fall on (or within
  `tolerance_px` of) the object's mask?
- `energy_in_mask` (Wang et al. 2020, Score-CAM's energy-based pointing game): the share of
  the map's mass inside the mask.
- `deletion_curve` / `insertion_curve` (Petsiuk et al. 2018, RISE): the class score as pixels
  are removed (or inserted) from most to least salient; their AUCs by the trapezoid rule over
  the fraction of pixels changed, both endpoints (0 and all pixels) included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError
from cnnkit.explain.layers import eval_mode
from cnnkit.explain.targets import Classes, Explainable, class_scores, resolve_classes, unwrap

Score = Literal["probability", "logit"]


def _check_pair(maps: torch.Tensor, masks: torch.Tensor) -> None:
    if maps.ndim != 3 or masks.shape != maps.shape:
        raise CnnkitError(f"maps and masks must both be (N, H, W), got {tuple(maps.shape)} and {tuple(masks.shape)}")


def _dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Masks grown by a disc of `radius` pixels (Euclidean distance <= radius)."""
    if radius == 0:
        return masks.bool()
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    disc = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).to(torch.float32)
    grown = F.conv2d(masks[:, None].float(), disc[None, None], padding=radius)
    return grown[:, 0] > 0


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, *, tolerance_px: int = 0) -> torch.Tensor:
    """(N,) bool: the first maximum (row-major) of each map (N, H, W) lies within `tolerance_px`
    pixels (Euclidean) of its mask (N, H, W). A constant map points nowhere: a miss."""
    _check_pair(maps, masks)
    if tolerance_px < 0:
        raise CnnkitError(f"tolerance_px must be >= 0, got {tolerance_px}")
    flat = maps.flatten(1)
    peak = flat.argmax(dim=1)
    hits = _dilate(masks, tolerance_px).flatten(1).gather(1, peak[:, None])[:, 0]
    return hits & (flat.max(dim=1).values > flat.min(dim=1).values)


def energy_in_mask(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,) share of each map's positive mass inside its mask (0 for an all-zero map)."""
    _check_pair(maps, masks)
    positive = maps.clamp_min(0).flatten(1).double()
    inside = (positive * masks.flatten(1).double()).sum(dim=1)
    total = positive.sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(1e-300), torch.zeros_like(total))


@dataclass(frozen=True)
class Curve:
    """`fractions` (S+1,) of pixels changed, from 0 to 1; `scores` (N, S+1); `auc` (N,)."""

    fractions: torch.Tensor
    scores: torch.Tensor
    auc: torch.Tensor


def _curve(model: Explainable, images: Any, maps: torch.Tensor, *, insert: bool, classes: Classes, class_names: Any,
           steps: int, baseline: float | torch.Tensor, score: Score, batch_size: int) -> Curve:
    module, images, names = unwrap(model, images, class_names)
    if maps.shape != (images.shape[0], *images.shape[-2:]):
        raise CnnkitError(f"maps must be (N, H, W) = {(images.shape[0], *images.shape[-2:])}, got {tuple(maps.shape)}")
    if steps < 1 or batch_size < 1 or score not in ("probability", "logit"):
        raise CnnkitError(f"need steps >= 1, batch_size >= 1 and score 'probability' or 'logit', got {steps}, "
                          f"{batch_size}, {score!r}")
    pixels = maps[0].numel()
    per_step = math.ceil(pixels / steps)
    counts = [min(k * per_step, pixels) for k in range(steps + 1)]
    background = torch.as_tensor(baseline, dtype=images.dtype, device=images.device).expand_as(images)
    curves = []
    with eval_mode(module), torch.no_grad():
        targets = resolve_classes(classes, module(images), names)
        for image, base, saliency, target in zip(images, background, maps, targets):
            order = torch.argsort(saliency.flatten(), descending=True, stable=True)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(pixels, device=order.device)
            changed = torch.stack([rank < count for count in counts]).reshape(-1, 1, *saliency.shape)
            start, end = (base, image) if insert else (image, base)
            variants = torch.where(changed.to(image.device), end, start)
            values = []
            for first in range(0, len(variants), batch_size):
                logits = module(variants[first:first + batch_size])
                chosen = logits.softmax(dim=1) if score == "probability" else logits
                values.append(class_scores(chosen, target.repeat(len(logits))))
            curves.append(torch.cat(values))
    fractions = torch.tensor(counts, dtype=torch.float64) / pixels
    scores = torch.stack(curves).double().cpu()
    return Curve(fractions, scores, torch.trapezoid(scores, fractions, dim=1))


def deletion_curve(model: Explainable, images: Any, maps: torch.Tensor, *, classes: Classes = None,
                   class_names: Any = None, steps: int = 32, baseline: float | torch.Tensor = 0.0,
                   score: Score = "probability", batch_size: int = 33) -> Curve:
    """Class score as the most salient pixels (all channels) are set to `baseline`, ceil(HW/steps)
    at a time; a faithful map makes the score fall fast (low AUC)."""
    return _curve(model, images, maps, insert=False, classes=classes, class_names=class_names, steps=steps,
                  baseline=baseline, score=score, batch_size=batch_size)


def insertion_curve(model: Explainable, images: Any, maps: torch.Tensor, *, classes: Classes = None,
                    class_names: Any = None, steps: int = 32, baseline: float | torch.Tensor = 0.0,
                    score: Score = "probability", batch_size: int = 33) -> Curve:
    """Class score as the most salient pixels are copied onto `baseline` (RISE uses a blurred
    image); a faithful map makes the score rise fast (high AUC)."""
    return _curve(model, images, maps, insert=True, classes=classes, class_names=class_names, steps=steps,
                  baseline=baseline, score=score, batch_size=batch_size)


def deletion_auc(model: Explainable, images: Any, maps: torch.Tensor, **options: Any) -> torch.Tensor:
    """(N,) area under `deletion_curve` (lower is better)."""
    return deletion_curve(model, images, maps, **options).auc


def insertion_auc(model: Explainable, images: Any, maps: torch.Tensor, **options: Any) -> torch.Tensor:
    """(N,) area under `insertion_curve` (higher is better)."""
    return insertion_curve(model, images, maps, **options).auc
