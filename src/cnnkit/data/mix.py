"""Batch-level MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019), mixing labels too.

Both take a batch (N, C, H, W) and labels (N,) int or soft (N, K), pair each image with a
random partner (a permutation of the batch), and return the mixed batch with soft targets
(N, K) = lam * y + (1 - lam) * y[perm]. lam ~ Beta(alpha, alpha), drawn from the explicit
torch.Generator. Run them on the device, after Normalize.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cnnkit.data.transforms import randint, require_generator


def soft_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N,) class indices -> (N, K) one-hot float32; (N, K) soft targets pass through (checked)."""
    if labels.dim() == 1:
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must be in [0, {num_classes}), got min {labels.min()} max {labels.max()}")
        return torch.nn.functional.one_hot(labels.long(), num_classes).float()
    if labels.dim() == 2 and labels.shape[1] == num_classes:
        return labels.float()
    raise ValueError(f"labels must be (N,) indices or (N, {num_classes}) soft targets, got {tuple(labels.shape)}")


def sample_beta(alpha: float, generator: torch.Generator) -> float:
    """lam ~ Beta(alpha, alpha). torch's Beta takes no generator, so NumPy's sampler is seeded
    from `generator` (one 63-bit draw): the randomness still comes only from `generator`."""
    if alpha <= 0:
        raise ValueError(f"Beta concentration alpha must be positive, got {alpha}")
    seed = int(torch.randint(0, 2**63 - 1, (), generator=generator, device=generator.device).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def random_partner(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A random permutation of range(n) on `device`: who mixes with whom."""
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def mixup(
    images: torch.Tensor, targets: torch.Tensor, lam: float, partner: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """lam * x + (1 - lam) * x[partner] for float images (N, C, H, W) and soft targets (N, K)."""
    if not images.is_floating_point():
        raise ValueError(f"MixUp needs float images (apply Normalize first), got {images.dtype}")
    mixed = images.mul(lam).add_(images[partner], alpha=1.0 - lam)
    return mixed, targets.mul(lam).add_(targets[partner], alpha=1.0 - lam)


def cutmix_box(height: int, width: int, lam: float, generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a box with area about (1 - lam) of the image, centred at a
    uniform random pixel and clipped to the image (Yun et al. 2019, Algorithm A1)."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = randint(generator, 0, height), randint(generator, 0, width)
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, left, bottom, right


def cutmix(
    images: torch.Tensor, targets: torch.Tensor, box: tuple[int, int, int, int], partner: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Paste x[partner]'s `box` into each image; targets mixed by the pasted area's true share.

    Returns (images, targets, lam) where lam = 1 - box area / image area: the box was clipped
    at the border, so this corrected lam, not the sampled one, weighs the labels.
    """
    top, left, bottom, right = box
    height, width = images.shape[-2:]
    lam = 1.0 - (bottom - top) * (right - left) / float(height * width)
    mixed = images.clone()
    mixed[..., top:bottom, left:right] = images[partner][..., top:bottom, left:right]
    return mixed, targets.mul(lam).add_(targets[partner], alpha=1.0 - lam), lam


class MixUp:
    """Batch MixUp: `mix(images, labels, generator=g) -> (images, soft targets (N, K))`."""

    def __init__(self, num_classes: int, *, alpha: float = 0.2) -> None:
        self.num_classes = num_classes
        self.alpha = alpha

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        generator = require_generator(generator, self)
        lam = sample_beta(self.alpha, generator)
        partner = random_partner(len(images), generator, images.device)
        return mixup(images, soft_targets(labels, self.num_classes), lam, partner)

    def __repr__(self) -> str:
        return f"MixUp(num_classes={self.num_classes}, alpha={self.alpha})"


class CutMix:
    """Batch CutMix: `mix(images, labels, generator=g) -> (images, soft targets (N, K))`."""

    def __init__(self, num_classes: int, *, alpha: float = 1.0) -> None:
        self.num_classes = num_classes
        self.alpha = alpha

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        generator = require_generator(generator, self)
        lam = sample_beta(self.alpha, generator)
        box = cutmix_box(images.shape[-2], images.shape[-1], lam, generator)
        partner = random_partner(len(images), generator, images.device)
        mixed, targets, _ = cutmix(images, soft_targets(labels, self.num_classes), box, partner)
        return mixed, targets

    def __repr__(self) -> str:
        return f"CutMix(num_classes={self.num_classes}, alpha={self.alpha})"
