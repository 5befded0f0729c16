"""Random erasing (Zhong et al. 2017, "Random Erasing Data Augmentation"): blank a random box.

Usually applied after Normalize, where value="random" fills the box with N(0, 1) noise
(the paper's best variant); on uint8 images "random" means uniform bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cnnkit.data.transforms import (
    Transform,
    bernoulli,
    per_sample,
    randint,
    require_generator,
    uniform,
)


def random_erasing_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int] | None:
    """(top, left, h, w) of a box with area fraction in `scale`, log-uniform aspect in `ratio`.

    torchvision's sampling: up to 10 tries for a box strictly inside the image, else None.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        erase_area = area * uniform(generator, scale[0], scale[1])
        aspect = math.exp(uniform(generator, log_ratio[0], log_ratio[1]))
        h = int(round(math.sqrt(erase_area * aspect)))
        w = int(round(math.sqrt(erase_area / aspect)))
        if 0 < h < height and 0 < w < width:
            return randint(generator, 0, height - h + 1), randint(generator, 0, width - w + 1), h, w
    return None


class RandomErasing(Transform):
    """With probability p, replace a random box by `value` (a number, one per channel, or "random")."""

    def __init__(
        self,
        p: float = 0.5,
        *,
        scale: tuple[float, float] = (0.02, 0.33),
        ratio: tuple[float, float] = (0.3, 3.3),
        value: float | Sequence[float] | str = 0.0,
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"erasing probability p must be in [0, 1], got {p}")
        if not (0 < scale[0] <= scale[1] < 1):
            raise ValueError(f"erasing scale must satisfy 0 < min <= max < 1, got {scale}")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"erasing value must be a number, one per channel, or 'random', got {value!r}")
        self.p = p
        self.scale = scale
        self.ratio = ratio
        self.value = value

    def _fill(self, shape: tuple[int, ...], img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.value != "random":
            value = torch.tensor(self.value, dtype=torch.float32).reshape(-1, 1, 1)
            if value.numel() not in (1, shape[0]):
                raise ValueError(f"erasing value needs 1 or {shape[0]} numbers, got {self.value!r}")
            return value.expand(shape).to(device=img.device, dtype=img.dtype)
        if img.dtype == torch.uint8:
            noise = torch.randint(0, 256, shape, generator=generator, device=generator.device, dtype=torch.uint8)
        else:
            noise = torch.randn(shape, generator=generator, device=generator.device)
        return noise.to(device=img.device, dtype=img.dtype)

    def _one(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not bool(bernoulli(generator, self.p)):
            return img
        box = random_erasing_box(img.shape[-2], img.shape[-1], self.scale, self.ratio, generator)
        if box is None:
            return img
        top, left, h, w = box
        out = img.clone()
        out[..., top : top + h, left : left + w] = self._fill((img.shape[-3], h, w), img, generator)
        return out

    def __call__(self, img: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return per_sample(self._one, img, require_generator(generator, self))
