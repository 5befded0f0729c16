"""MixUp and CutMix: identities, the area/lambda relation, Beta moments, reproducibility."""

from __future__ import annotations

import pytest
import torch

from cnnkit.data.mix import CutMix, MixUp, cutmix, cutmix_box, mixup, sample_beta, soft_targets


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def constant_batch(n: int = 4, size: int = 16) -> torch.Tensor:
    """Image i is filled with the value i, so every pixel tells which image it came from."""
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, size, size).clone()


def test_mixup_with_lambda_one_is_the_identity():
    images, labels = torch.randn(5, 3, 8, 8, generator=gen()), torch.tensor([0, 1, 2, 1, 0])
    targets = soft_targets(labels, 3)
    mixed, mixed_targets = mixup(images, targets, 1.0, torch.randperm(5, generator=gen()))
    assert torch.equal(mixed, images) and torch.equal(mixed_targets, targets)


def test_mixup_is_the_convex_combination():
    images, targets = torch.randn(4, 1, 3, 3, generator=gen()), soft_targets(torch.tensor([0, 1, 2, 3]), 4)
    partner = torch.tensor([1, 0, 3, 2])
    mixed, mixed_targets = mixup(images, targets, 0.3, partner)
    torch.testing.assert_close(mixed, 0.3 * images + 0.7 * images[partner])
    torch.testing.assert_close(mixed_targets[0], torch.tensor([0.3, 0.7, 0.0, 0.0]))


def test_cutmix_box_area_matches_the_corrected_lambda():
    images = constant_batch()
    targets = soft_targets(torch.arange(4), 4)
    partner = torch.tensor([1, 2, 3, 0])
    g = gen(3)
    for lam in (0.1, 0.5, 0.9):
        box = cutmix_box(16, 16, lam, g)
        mixed, mixed_targets, corrected = cutmix(images, targets, box, partner)
        kept = (mixed == images).float().mean(dim=(1, 2, 3))
        torch.testing.assert_close(kept, torch.full((4,), corrected))
        torch.testing.assert_close(mixed_targets[0], torch.tensor([corrected, 1 - corrected, 0.0, 0.0]))


def test_cutmix_box_unclipped_has_the_requested_area():
    # Centred boxes are not clipped: area = (1 - lam) of the image, up to integer rounding.
    unclipped = 0
    for seed in range(20):
        top, left, bottom, right = cutmix_box(100, 100, 0.75, gen(seed))
        if top > 0 and left > 0 and bottom < 100 and right < 100:
            assert (bottom - top) * (right - left) == 50 * 50
            unclipped += 1
    assert unclipped >= 3, "too few unclipped boxes drawn for the check to mean anything"


def test_beta_samples_have_the_known_moments():
    g = gen(0)
    alpha = 0.4
    draws = torch.tensor([sample_beta(alpha, g) for _ in range(4000)])
    assert draws.mean().item() == pytest.approx(0.5, abs=0.02)
    assert draws.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), abs=0.01)


@pytest.mark.parametrize("mix", [MixUp(5, alpha=0.4), CutMix(5, alpha=1.0)])
def test_batch_mix_is_reproducible_and_targets_sum_to_one(mix):
    images, labels = torch.randn(6, 3, 12, 12, generator=gen()), torch.tensor([0, 1, 2, 3, 4, 0])
    first = mix(images, labels, generator=gen(9))
    second = mix(images, labels, generator=gen(9))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[1].shape == (6, 5)
    torch.testing.assert_close(first[1].sum(dim=1), torch.ones(6))
    assert not torch.equal(first[0], mix(images, labels, generator=gen(10))[0])


def test_mixup_refuses_uint8_and_bad_labels():
    with pytest.raises(ValueError, match="float"):
        MixUp(3)(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), generator=gen())
    with pytest.raises(ValueError, match="labels"):
        soft_targets(torch.tensor([0, 5]), 3)
