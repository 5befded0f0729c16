"""Image transforms on torch tensors: the common contract, Compose, float conversion, Normalize.

Every transform is called as `t(img, generator=g)` on a (C, H, W) or (N, C, H, W) tensor and
returns a tensor on the same device. Random transforms draw ONLY from the explicit
`torch.Generator` (same seed -> same output); deterministic ones ignore it. uint8 images stay
uint8 until Normalize (or ToFloat), which is where they become float32 in [0, 1] first.
Geometric transforms live in `transforms_geometric`, colour in `transforms_color`, erasing in
`transforms_erasing`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# ITU-R 601-2 luma weights, the ones PIL's convert("L") and torchvision's rgb_to_grayscale use.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class Transform:
    """Base of all transforms: `__call__(img, *, generator=None) -> img`, device follows the input."""

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def require_generator(generator: torch.Generator | None, owner: object) -> torch.Generator:
    """Return `generator`, or fail clearly: random transforms never fall back to global RNG state."""
    if generator is None:
        raise ValueError(f"{type(owner).__name__} is random: pass generator=torch.Generator() explicitly")
    return generator


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One float drawn uniformly from [low, high) with `generator` (on the generator's device)."""
    u = torch.rand((), generator=generator, device=generator.device).item()
    return low + (high - low) * u


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """One int drawn uniformly from [low, high) with `generator`."""
    return int(torch.randint(low, high, (), generator=generator, device=generator.device).item())


def bernoulli(generator: torch.Generator, p: float, n: int | None = None) -> torch.Tensor:
    """Coin flips with probability `p`: a bool scalar tensor, or (n,) when `n` is given (CPU)."""
    shape = () if n is None else (n,)
    return (torch.rand(shape, generator=generator, device=generator.device) < p).cpu()


def is_batch(img: torch.Tensor) -> bool:
    """True for (N, C, H, W), False for (C, H, W); anything else is an error naming the shape."""
    if img.dim() == 4:
        return True
    if img.dim() == 3:
        return False
    raise ValueError(f"expected an image (C, H, W) or a batch (N, C, H, W), got shape {tuple(img.shape)}")


def per_sample(
    fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor], img: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Apply a random per-image `fn(img, generator)` to each image of a batch (independent draws)."""
    if not is_batch(img):
        return fn(img, generator)
    return torch.stack([fn(one, generator) for one in img])


def max_value(img: torch.Tensor) -> float:
    """The white level of `img`: 255 for uint8, 1.0 for float images in [0, 1]."""
    return 255.0 if img.dtype == torch.uint8 else 1.0


def restore_dtype(result: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast a float result back to `dtype`; uint8 is rounded and clamped (not truncated)."""
    if dtype == torch.uint8:
        return result.round().clamp_(0, 255).to(torch.uint8)
    return result.to(dtype)


class Compose(Transform):
    """Apply transforms in order, passing the same generator along so the chain is reproducible."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        for transform in self.transforms:
            img = transform(img, generator=generator)
        return img

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class ToFloat(Transform):
    """uint8 [0, 255] -> float32 [0, 1]; float input is returned unchanged."""

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        if img.dtype == torch.uint8:
            return img.float().div_(255.0)
        return img


class Normalize(Transform):
    """(x - mean) / std per channel, fused with uint8 -> float /255; output float32.

    Accepts (C, H, W) or (N, C, H, W) on any device; mean and std have one value per channel.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} need one value per channel each")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        channels = img.shape[-3]
        if channels != len(self.mean):
            raise ValueError(f"Normalize has {len(self.mean)} channel(s) of mean/std but the image has {channels}")
        mean = torch.tensor(self.mean, device=img.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=img.device).view(-1, 1, 1)
        # One multiply-add per pixel: (x/255 - mean)/std = x * (1/(255 std)) - mean/std.
        scale, shift = 1.0 / (std * max_value(img)), mean / std
        if img.dtype == torch.float32:
            return img * scale - shift
        # In place on the fresh float copy: half the memory traffic of out-of-place ops.
        return img.float().mul_(scale).sub_(shift)


class MatchChannels(Transform):
    """Give an image the model's channel count: 1 -> 3 repeats the grey plane, 3 -> 1 is luminance.

    The luminance is ITU-R 601-2 (0.299 R + 0.587 G + 0.114 B), as PIL's convert("L").
    """

    def __init__(self, channels: int) -> None:
        if channels not in (1, 3):
            raise ValueError(f"MatchChannels supports 1 or 3 channels, got {channels}")
        self.channels = channels

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        have = img.shape[-3]
        if have == self.channels:
            return img
        if have == 1 and self.channels == 3:
            repeats = [1] * img.dim()
            repeats[-3] = 3
            return img.repeat(*repeats)
        if have == 3 and self.channels == 1:
            return restore_dtype(to_luminance(img), img.dtype)
        raise ValueError(f"cannot convert a {have}-channel image to {self.channels} channel(s)")


def to_luminance(img: torch.Tensor) -> torch.Tensor:
    """(…, 3, H, W) RGB -> (…, 1, H, W) float luminance in the input's range (no rounding)."""
    weights = torch.tensor(LUMA_WEIGHTS, device=img.device).view(3, 1, 1)
    return (img.float() * weights).sum(dim=-3, keepdim=True)
