"""Geometric transforms: Resize, CenterCrop, RandomResizedCrop, flips and rotation.

All take (C, H, W) or (N, C, H, W) tensors, keep the dtype (uint8 stays uint8) and the device;
random ones draw from the explicit generator, independently per image of a batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cnnkit.data.transforms import (
    Transform,
    bernoulli,
    is_batch,
    per_sample,
    randint,
    require_generator,
    restore_dtype,
    uniform,
)

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
Size = int | tuple[int, int]


def _check_interpolation(interpolation: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    return interpolation


def _pair(size: Size, name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or any(int(s) <= 0 for s in pair):
        raise ValueError(f"{name} must be a positive int or (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def output_size(height: int, width: int, size: Size) -> tuple[int, int]:
    """Target (h, w): an int sets the shorter side keeping the aspect ratio (torchvision's rule)."""
    if not isinstance(size, int):
        return _pair(size, "size")
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def resize(img: torch.Tensor, size: tuple[int, int], *, interpolation: str = "bilinear") -> torch.Tensor:
    """Antialiased resize of (C, H, W) or (N, C, H, W) to `size` = (h, w), same dtype and device.

    Float math through `F.interpolate(antialias=True)` (PIL's filter for downscaling); on CPU,
    uint8 bilinear and bicubic use torch's native uint8 kernels, as torchvision v2 does: they
    read channels-last input (`decode_image`'s layout) without a copy, about 2x faster than
    channels-first (and ~3x faster than Pillow's own resize here), and bicubic clamps between
    its two passes as PIL does (the float path's overshoot on sharp edges reached 15 levels).
    """
    batch = img if is_batch(img) else img.unsqueeze(0)
    if tuple(batch.shape[-2:]) == tuple(size):
        return img
    mode = _check_interpolation(interpolation)
    if mode == "nearest":
        # 'nearest-exact' samples at pixel centres like PIL; antialiasing does not apply.
        out = F.interpolate(batch, size=size, mode="nearest-exact")
    elif batch.dtype == torch.uint8 and batch.device.type == "cpu":
        out = F.interpolate(batch, size=size, mode=mode, antialias=True, align_corners=False)
    else:
        out = F.interpolate(batch.float(), size=size, mode=mode, antialias=True, align_corners=False)
        out = restore_dtype(out, img.dtype)
    return out if is_batch(img) else out[0]


def crop(img: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The box [top, top+height) x [left, left+width) of the last two axes (a view, no copy)."""
    return img[..., top : top + height, left : left + width]


def center_crop_box(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int]:
    """(top, left) of a centred crop; rounds half-pixel offsets as torchvision does."""
    return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))


class Resize(Transform):
    """Resize so the shorter side is `size` (int) or to exactly (h, w), antialiased."""

    def __init__(self, size: Size, *, interpolation: str = "bilinear") -> None:
        self.size = size if isinstance(size, int) else _pair(size, "size")
        self.interpolation = _check_interpolation(interpolation)

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        height, width = img.shape[-2:]
        return resize(img, output_size(height, width, self.size), interpolation=self.interpolation)


class CenterCrop(Transform):
    """Crop the centre (h, w) box; an image smaller than the box is zero-padded first (torchvision)."""

    def __init__(self, size: Size) -> None:
        self.size = _pair(size, "size")

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        crop_h, crop_w = self.size
        height, width = img.shape[-2:]
        if crop_h > height or crop_w > width:
            pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
            img = F.pad(img, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
            height, width = img.shape[-2:]
        top, left = center_crop_box(height, width, crop_h, crop_w)
        return crop(img, top, left, crop_h, crop_w)


def random_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop: area fraction in `scale`, log-uniform aspect in `ratio`.

    torchvision's algorithm (Szegedy et al. 2015 "Inception" crops): 10 tries, then the
    largest centred crop whose aspect ratio is within `ratio`.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * uniform(generator, scale[0], scale[1])
        aspect = math.exp(uniform(generator, log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = randint(generator, 0, height - h + 1)
            left = randint(generator, 0, width - w + 1)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


class RandomResizedCrop(Transform):
    """Crop a random area/aspect box, then resize it to `size` (antialiased)."""

    def __init__(
        self,
        size: Size,
        *,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        interpolation: str = "bilinear",
    ) -> None:
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
        self.size = _pair(size, "size")
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.interpolation = _check_interpolation(interpolation)

    def _one(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        box = random_resized_crop_box(img.shape[-2], img.shape[-1], self.scale, self.ratio, generator)
        return resize(crop(img, *box), self.size, interpolation=self.interpolation)

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return per_sample(self._one, img, require_generator(generator, self))


class _RandomFlip(Transform):
    """Flip along `_axis` with probability p, an independent coin per image of a batch."""

    _axis = -1

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        generator = require_generator(generator, self)
        if not is_batch(img):
            return img.flip(self._axis) if bool(bernoulli(generator, self.p)) else img
        flip = bernoulli(generator, self.p, len(img)).to(img.device).view(-1, 1, 1, 1)
        return torch.where(flip, img.flip(self._axis), img)


class RandomHorizontalFlip(_RandomFlip):
    """Mirror left-right with probability p."""

    _axis = -1


class RandomVerticalFlip(_RandomFlip):
    """Mirror top-bottom with probability p."""

    _axis = -2


def rotate(
    img: torch.Tensor,
    angle: float,
    *,
    interpolation: str = "nearest",
    fill: float | Sequence[float] = 0.0,
) -> torch.Tensor:
    """Rotate (C, H, W) or (N, C, H, W) counter-clockwise by `angle` degrees about the centre.

    Same size out; uncovered pixels get `fill` (one value or one per channel, in the image's
    range). Pixel-space rotation mapped to grid_sample's normalised coordinates, so
    non-square images rotate without shear.
    """
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"rotation interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
    batch = img if is_batch(img) else img.unsqueeze(0)
    n, channels, height, width = batch.shape
    theta_rad = math.radians(angle)
    cos, sin = math.cos(theta_rad), math.sin(theta_rad)
    # Output pixel (x, y) (y down) samples the input at R(-angle)(x, y); a counter-clockwise
    # turn on screen is clockwise in y-down coordinates, hence the signs below.
    inverse = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
    to_pixels = torch.diag(torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64))
    to_normalised = torch.diag(torch.tensor([2.0 / width, 2.0 / height], dtype=torch.float64))
    linear = to_normalised @ inverse @ to_pixels
    theta = torch.cat([linear, torch.zeros(2, 1, dtype=torch.float64)], dim=1)
    theta = theta.to(torch.float32).to(img.device).expand(n, 2, 3)
    grid = F.affine_grid(theta, [n, channels, height, width], align_corners=False)
    # A ones plane rides along so that uncovered pixels can be filled (torchvision's trick).
    source = torch.cat([batch.float(), torch.ones_like(batch[:, :1], dtype=torch.float32)], dim=1)
    warped = F.grid_sample(source, grid, mode=interpolation, padding_mode="zeros", align_corners=False)
    values, coverage = warped[:, :-1], warped[:, -1:]
    fill_values = torch.tensor(fill, dtype=torch.float32, device=img.device).reshape(-1, 1, 1)
    if fill_values.numel() not in (1, channels):
        raise ValueError(f"fill needs 1 or {channels} values, got {fill!r}")
    if interpolation == "nearest":
        coverage = (coverage > 0.5).float()
    out = values * coverage + fill_values * (1.0 - coverage)
    out = restore_dtype(out, img.dtype)
    return out if is_batch(img) else out[0]


class RandomRotation(Transform):
    """Rotate by an angle drawn uniformly from [-degrees, degrees] (or the given (min, max))."""

    def __init__(
        self,
        degrees: float | tuple[float, float],
        *,
        interpolation: str = "nearest",
        fill: float | Sequence[float] = 0.0,
    ) -> None:
        if isinstance(degrees, (int, float)):
            if degrees < 0:
                raise ValueError(f"degrees must be non-negative when a single number, got {degrees}")
            degrees = (-float(degrees), float(degrees))
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"rotation interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
        self.degrees = (float(degrees[0]), float(degrees[1]))
        self.interpolation = interpolation
        self.fill = fill

    def _one(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        angle = uniform(generator, *self.degrees)
        return rotate(img, angle, interpolation=self.interpolation, fill=self.fill)

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return per_sample(self._one, img, require_generator(generator, self))
