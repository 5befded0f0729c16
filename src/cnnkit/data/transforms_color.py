"""Colour transforms: brightness, contrast, saturation and hue adjustments, and ColorJitter.

torchvision's semantics: each adjustment blends the image with a reference (black, the mean
grey, the greyscale image) by a factor, or shifts hue in HSV; ColorJitter applies the four in
a random order with factors drawn uniformly. Images are (C, H, W) or (N, C, H, W), C = 1 or 3,
uint8 in [0, 255] or float in [0, 1]; work is done in float and rounded back once.
"""

from __future__ import annotations

import torch

from cnnkit.data.transforms import (
    Transform,
    max_value,
    per_sample,
    require_generator,
    restore_dtype,
    to_luminance,
    uniform,
)


def _blend(img: torch.Tensor, other: torch.Tensor | float, factor: float, bound: float) -> torch.Tensor:
    # factor * img + (1 - factor) * other, clamped to the valid range (torchvision's _blend).
    return (factor * img + (1.0 - factor) * other).clamp_(0.0, bound)


def adjust_brightness(img: torch.Tensor, factor: float, *, bound: float = 1.0) -> torch.Tensor:
    """Scale towards black: factor 0 gives black, 1 the original, 2 twice as bright (float img)."""
    return _blend(img, 0.0, factor, bound)


def adjust_contrast(img: torch.Tensor, factor: float, *, bound: float = 1.0) -> torch.Tensor:
    """Blend with the image's mean grey level: factor 0 gives flat grey, 1 the original."""
    grey = to_luminance(img) if img.shape[-3] == 3 else img
    mean = grey.mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(img, mean, factor, bound)


def adjust_saturation(img: torch.Tensor, factor: float, *, bound: float = 1.0) -> torch.Tensor:
    """Blend with the greyscale image: factor 0 gives grey, 1 the original; grey input unchanged."""
    if img.shape[-3] == 1:
        return img
    return _blend(img, to_luminance(img), factor, bound)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(…, 3, H, W) float RGB in [0, 1] -> HSV with every component in [0, 1] (hue as a turn)."""
    r, g, b = rgb.unbind(dim=-3)
    maxc, _ = rgb.max(dim=-3)
    minc, _ = rgb.min(dim=-3)
    delta = maxc - minc
    value = maxc
    saturation = delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    safe_delta = torch.where(delta == 0, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / safe_delta, (maxc - g) / safe_delta, (maxc - b) / safe_delta
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta == 0, torch.zeros_like(hue), hue)
    hue = (hue / 6.0) % 1.0
    return torch.stack([hue, saturation, value], dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_hsv`: (…, 3, H, W) HSV in [0, 1] -> RGB in [0, 1]."""
    hue, saturation, value = hsv.unbind(dim=-3)
    sector = torch.floor(hue * 6.0)
    fraction = hue * 6.0 - sector
    sector = sector.to(torch.int64) % 6
    p = value * (1.0 - saturation)
    q = value * (1.0 - saturation * fraction)
    t = value * (1.0 - saturation * (1.0 - fraction))
    # Per sector, (r, g, b) is a fixed arrangement of (v, t, p, q): the standard hexcone model.
    candidates = torch.stack([value, q, p, t], dim=-3)
    table = torch.tensor(
        [[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]], device=hsv.device
    )
    index = table[sector].movedim(-1, -3)
    return torch.gather(candidates, -3, index)


def adjust_hue(img: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate hue by `shift` of a turn, in [-0.5, 0.5]; float RGB in [0, 1]; grey input unchanged."""
    if not -0.5 <= shift <= 0.5:
        raise ValueError(f"hue shift must be in [-0.5, 0.5], got {shift}")
    if img.shape[-3] == 1 or shift == 0.0:
        return img
    hsv = rgb_to_hsv(img)
    hue = (hsv[..., 0:1, :, :] + shift) % 1.0
    return hsv_to_rgb(torch.cat([hue, hsv[..., 1:, :, :]], dim=-3))


def _factor_range(value: float | tuple[float, float], name: str) -> tuple[float, float] | None:
    # torchvision's rule: v -> [max(0, 1 - v), 1 + v]; a range equal to (1, 1) means "off".
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
        low, high = max(0.0, 1.0 - value), 1.0 + value
    else:
        low, high = float(value[0]), float(value[1])
        if not 0 <= low <= high:
            raise ValueError(f"{name} range must satisfy 0 <= min <= max, got {value}")
    return None if low == high == 1.0 else (low, high)


def _hue_range(value: float | tuple[float, float]) -> tuple[float, float] | None:
    low, high = (-float(value), float(value)) if isinstance(value, (int, float)) else map(float, value)
    if not -0.5 <= low <= high <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5] (or a range inside [-0.5, 0.5]), got {value}")
    return None if low == high == 0.0 else (low, high)


class ColorJitter(Transform):
    """Random brightness, contrast, saturation and hue, applied in a random order (torchvision).

    Each of brightness/contrast/saturation = b gives a factor uniform in [max(0, 1-b), 1+b]
    (or pass a (min, max) range); hue = h gives a shift uniform in [-h, h] of a turn, h <= 0.5.
    """

    def __init__(
        self,
        brightness: float | tuple[float, float] = 0.0,
        contrast: float | tuple[float, float] = 0.0,
        saturation: float | tuple[float, float] = 0.0,
        hue: float | tuple[float, float] = 0.0,
    ) -> None:
        self.brightness = _factor_range(brightness, "brightness")
        self.contrast = _factor_range(contrast, "contrast")
        self.saturation = _factor_range(saturation, "saturation")
        self.hue = _hue_range(hue)

    def _one(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        order = torch.randperm(4, generator=generator, device=generator.device).tolist()
        # As torchvision: the order first, then the enabled factors in a fixed order.
        factors = [None if r is None else uniform(generator, *r) for r in self._ranges()]
        if all(f is None for f in factors):
            return img
        bound = max_value(img)
        out = img.float() / bound
        for index in order:
            factor = factors[index]
            if factor is None:
                continue
            if index == 0:
                out = adjust_brightness(out, factor)
            elif index == 1:
                out = adjust_contrast(out, factor)
            elif index == 2:
                out = adjust_saturation(out, factor)
            else:
                out = adjust_hue(out, factor)
        return restore_dtype(out * bound, img.dtype)

    def _ranges(self) -> list[tuple[float, float] | None]:
        return [self.brightness, self.contrast, self.saturation, self.hue]

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return per_sample(self._one, img, require_generator(generator, self))
