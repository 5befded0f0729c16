"""Pipelines built from a DefaultCfg produce the model's input size, channels and normalisation."""

from __future__ import annotations

import math

import pytest
import torch

from cnnkit.data.pipeline import eval_pipeline, eval_scale_size, train_pipeline
from cnnkit.models.base import IMAGENET_MEAN, IMAGENET_STD, DefaultCfg


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def photo(shape=(3, 90, 120), seed=0) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=gen(seed), dtype=torch.uint8)


RGB = DefaultCfg(input_size=(3, 32, 32), crop_pct=0.875)
GREY = DefaultCfg(input_size=(1, 28, 28), mean=(0.1307,), std=(0.3081,), crop_pct=1.0)


def test_eval_pipeline_is_resize_centre_crop_normalize():
    img = photo()
    out = eval_pipeline(RGB)(img)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    # Oracle: torch's own antialiased interpolate to floor(32 / 0.875) = 36 on the short side.
    scale = math.floor(32 / 0.875)
    resized = torch.nn.functional.interpolate(
        img[None].float(), size=(scale, scale * 120 // 90), mode="bilinear", antialias=True, align_corners=False
    )[0].round()
    top, left = round((scale - 32) / 2), round((resized.shape[-1] - 32) / 2)
    expected = resized[:, top : top + 32, left : left + 32] / 255
    expected = (expected - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert (out - expected).abs().max() <= 1.01 / 255 / min(IMAGENET_STD)


def test_eval_scale_size_follows_timm():
    assert eval_scale_size(DefaultCfg()) == 256
    assert eval_scale_size(DefaultCfg(input_size=(3, 240, 320), crop_pct=0.8)) == (300, 400)
    assert eval_pipeline(DefaultCfg()).decode_hint == (256, 256)


def test_train_pipeline_gives_input_size_and_normalised_range():
    cfg = DefaultCfg(input_size=(3, 48, 40))
    pipeline = train_pipeline(cfg)
    batch = torch.stack([pipeline.sample(photo(seed=s), generator=gen(s)) for s in range(4)])
    assert batch.shape == (4, 3, 48, 40) and batch.dtype == torch.uint8
    out = pipeline.batch(batch, generator=gen())
    assert out.shape == (4, 3, 48, 40) and out.dtype == torch.float32
    assert pipeline.decode_hint == (40, 48)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(out, (batch.float() / 255 - mean) / std)
    erasing = train_pipeline(cfg, random_erasing=1.0)
    assert not torch.equal(erasing.batch(batch, generator=gen()), out)


def test_train_pipeline_is_reproducible_per_seed():
    pipeline = train_pipeline(RGB)
    img = photo()
    assert torch.equal(pipeline(img, generator=gen(1)), pipeline(img, generator=gen(1)))
    assert not torch.equal(pipeline(img, generator=gen(1)), pipeline(img, generator=gen(2)))


def test_grey_model_takes_luminance_and_its_own_normalisation():
    out = eval_pipeline(GREY)(photo((3, 28, 28)))
    assert out.shape == (1, 28, 28)
    grey = photo((1, 28, 28))
    torch.testing.assert_close(eval_pipeline(GREY)(grey), (grey.float() / 255 - 0.1307) / 0.3081)


def test_grey_image_is_repeated_for_a_colour_model():
    grey = photo((1, 90, 120))
    out = train_pipeline(RGB, color_jitter=0.0)(grey, generator=gen())
    assert out.shape == (3, 32, 32)
    # Equal planes before normalising: undo the per-channel affine map and compare.
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    raw = out * std + mean
    torch.testing.assert_close(raw[0], raw[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(raw[1], raw[2], atol=1e-5, rtol=0)


def test_inconsistent_cfg_is_a_clear_error():
    with pytest.raises(ValueError, match="mean"):
        eval_pipeline(DefaultCfg(input_size=(1, 28, 28)))
