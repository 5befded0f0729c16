"""Train and eval preprocessing built from a model's `DefaultCfg`, so inputs always match the model.

A Pipeline has two stages: `sample`, run per image in the loader workers on uint8 (channel
matching, crop/resize, flip, colour jitter), and `batch`, run on the device on the collated
(N, C, H, W) uint8 batch (float conversion + Normalize, random erasing). Channel rule: a
1-channel image fed to a 3-channel model is repeated; a 3-channel image fed to a 1-channel
model becomes its ITU-R 601-2 luminance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cnnkit.data.transforms import Compose, MatchChannels, Normalize, Transform
from cnnkit.data.transforms_color import ColorJitter
from cnnkit.data.transforms_erasing import RandomErasing
from cnnkit.data.transforms_geometric import CenterCrop, RandomHorizontalFlip, RandomResizedCrop, Resize
from cnnkit.models.base import DefaultCfg


@dataclass(frozen=True)
class Pipeline:
    """Per-sample uint8 stage + per-batch device stage.

    `decode_hint` is (width, height), the smallest decoded size the sample stage needs: pass it
    as `size_hint` to `cnnkit.data.decode.decode_image` (JPEG DCT scaling) for a free speed-up.
    """

    sample: Compose
    batch: Compose
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    decode_hint: tuple[int, int]

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """One uint8 image (C, H, W) -> the model's float input (C', H', W'): both stages."""
        return self.batch(self.sample(img, generator=generator).unsqueeze(0), generator=generator)[0]


# Below this side, images are small maps or digits: random crops and colour jitter would remove
# or change what defines the class, so cnnkit does not augment them by default.
SMALL_IMAGE = 64


def augments_by_default(height: int, width: int) -> bool:
    """Whether cnnkit's default training augmentation applies to images of this size."""
    return min(height, width) >= SMALL_IMAGE


def _check_cfg(cfg: DefaultCfg) -> tuple[int, int, int]:
    channels, height, width = cfg.input_size
    if len(cfg.mean) != channels or len(cfg.std) != channels:
        raise ValueError(
            f"DefaultCfg input_size {cfg.input_size} has {channels} channel(s) but mean {cfg.mean} / std {cfg.std}"
        )
    if not 0 < cfg.crop_pct <= 1:
        raise ValueError(f"DefaultCfg crop_pct must be in (0, 1], got {cfg.crop_pct}")
    return channels, height, width


def eval_scale_size(cfg: DefaultCfg) -> int | tuple[int, int]:
    """The resize before the centre crop: floor(size / crop_pct) (timm's convention).

    Square inputs resize the shorter side (an int); non-square inputs resize to exactly (h, w).
    """
    _, height, width = cfg.input_size
    if height == width:
        return math.floor(height / cfg.crop_pct)
    return math.floor(height / cfg.crop_pct), math.floor(width / cfg.crop_pct)


def train_pipeline(
    cfg: DefaultCfg,
    *,
    hflip: float = 0.5,
    color_jitter: float = 0.4,
    random_erasing: float = 0.0,
    auto_scale: tuple[float, float] = (0.08, 1.0),
) -> Pipeline:
    """RandomResizedCrop(input size, scale=auto_scale) + flip + colour jitter, then Normalize
    (+ random erasing with probability `random_erasing`, N(0, 1) noise after normalising)."""
    channels, height, width = _check_cfg(cfg)
    sample: list[Transform] = [
        MatchChannels(channels),
        RandomResizedCrop((height, width), scale=auto_scale, interpolation=cfg.interpolation),
    ]
    if hflip > 0:
        sample.append(RandomHorizontalFlip(hflip))
    if color_jitter > 0:
        # timm's convention: one number sets brightness, contrast and saturation; hue stays off.
        sample.append(ColorJitter(color_jitter, color_jitter, color_jitter))
    batch: list[Transform] = [Normalize(cfg.mean, cfg.std)]
    if random_erasing > 0:
        batch.append(RandomErasing(random_erasing, value="random"))
    return Pipeline(Compose(sample), Compose(batch), cfg.input_size, cfg.mean, cfg.std, (width, height))


def eval_pipeline(cfg: DefaultCfg) -> Pipeline:
    """Resize(floor(size / crop_pct)) + CenterCrop(input size) + Normalize: deterministic."""
    channels, height, width = _check_cfg(cfg)
    scale_size = eval_scale_size(cfg)
    sample = Compose(
        [MatchChannels(channels), Resize(scale_size, interpolation=cfg.interpolation), CenterCrop((height, width))]
    )
    decode = (scale_size, scale_size) if isinstance(scale_size, int) else (scale_size[1], scale_size[0])
    return Pipeline(sample, Compose([Normalize(cfg.mean, cfg.std)]), cfg.input_size, cfg.mean, cfg.std, decode)
