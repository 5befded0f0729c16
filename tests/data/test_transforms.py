"""Transforms against known answers, PIL / colorsys / torch oracles, and seed reproducibility."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from cnnkit.data.transforms import Compose, MatchChannels, Normalize, ToFloat
from cnnkit.data.transforms_color import ColorJitter, adjust_hue, hsv_to_rgb, rgb_to_hsv
from cnnkit.data.transforms_erasing import RandomErasing
from cnnkit.data.transforms_geometric import (
    CenterCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomRotation,
    RandomVerticalFlip,
    Resize,
    random_resized_crop_box,
    rotate,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_image(shape=(3, 20, 30), seed=0) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=gen(seed), dtype=torch.uint8)


def smooth_image(height=60, width=80) -> np.ndarray:
    """(H, W, 3) uint8 made of slow sines: resampling methods agree on it up to rounding."""
    y, x = np.mgrid[0:height, 0:width]
    base = 127 + 100 * np.sin(x / 9.0) * np.cos(y / 7.0)
    return np.stack([base, 255 - base, base / 2], axis=-1).astype(np.uint8)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)


def to_array(img: torch.Tensor) -> np.ndarray:
    return img.permute(1, 2, 0).numpy()


def test_flips_of_a_known_tensor():
    img = torch.arange(6, dtype=torch.uint8).view(1, 2, 3)
    assert RandomHorizontalFlip(1.0)(img, generator=gen()).tolist() == [[[2, 1, 0], [5, 4, 3]]]
    assert RandomVerticalFlip(1.0)(img, generator=gen()).tolist() == [[[3, 4, 5], [0, 1, 2]]]
    assert torch.equal(RandomHorizontalFlip(0.0)(img, generator=gen()), img)


def test_batch_flip_decides_per_image():
    batch = random_image((64, 1, 4, 4))
    out = RandomHorizontalFlip(0.5)(batch, generator=gen(3))
    flipped = [torch.equal(o, b.flip(-1)) and not torch.equal(o, b) for o, b in zip(out, batch)]
    assert 10 < sum(flipped) < 54


def test_center_crop_takes_the_exact_box():
    img = torch.arange(7 * 9, dtype=torch.uint8).view(1, 7, 9)
    assert torch.equal(CenterCrop((3, 4))(img), img[:, 2:5, 2:6])
    assert torch.equal(CenterCrop(5)(img), img[:, 1:6, 2:7])


def test_center_crop_pads_a_small_image_with_zeros():
    out = CenterCrop((4, 4))(torch.full((1, 2, 2), 9, dtype=torch.uint8))
    assert out[0].tolist() == [[0, 0, 0, 0], [0, 9, 9, 0], [0, 9, 9, 0], [0, 0, 0, 0]]


def test_random_resized_crop_is_the_seeded_box_resized():
    img = random_image((3, 40, 50))
    out = RandomResizedCrop((16, 16), interpolation="nearest")(img, generator=gen(7))
    top, left, h, w = random_resized_crop_box(40, 50, (0.08, 1.0), (3 / 4, 4 / 3), gen(7))
    expected = torch.nn.functional.interpolate(
        img[None, :, top : top + h, left : left + w], size=(16, 16), mode="nearest-exact"
    )[0]
    assert torch.equal(out, expected)


def test_random_resized_crop_boxes_respect_scale_and_ratio():
    g = gen(1)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(100, 120, (0.2, 0.5), (0.75, 4 / 3), g)
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 120
        assert 0.2 * 12000 * 0.9 <= h * w <= 0.5 * 12000 * 1.1
        assert 0.7 <= w / h <= 1.4


def test_random_resized_crop_falls_back_to_a_centre_crop():
    # A 1x100 strip: no box with aspect in [3/4, 4/3] fits, so the centre crop at ratio 4/3 is used.
    assert random_resized_crop_box(1, 100, (0.5, 1.0), (3 / 4, 4 / 3), gen()) == (0, 49, 1, 1)


def test_resize_matches_pil_antialiased_on_a_smooth_image():
    array = smooth_image()
    ours = to_array(Resize((23, 31))(to_tensor(array))).astype(int)
    pil = np.asarray(Image.fromarray(array).resize((31, 23), Image.BILINEAR)).astype(int)
    assert np.abs(ours - pil).max() <= 1
    ours_float = to_array(Resize((23, 31))(to_tensor(array).float()))
    assert np.abs(ours_float - pil).max() <= 1.0
    bicubic = to_array(Resize((23, 31), interpolation="bicubic")(to_tensor(array))).astype(int)
    assert np.abs(bicubic - np.asarray(Image.fromarray(array).resize((31, 23), Image.BICUBIC))).max() <= 2


@pytest.mark.parametrize(("shape", "size"), [((3, 10, 10), (23, 23)), ((3, 97, 131), (50, 67))])
def test_uint8_bicubic_matches_pil_on_sharp_noise(shape, size):
    # Noise is all edges: PIL (and torchvision v2's uint8 kernel) clamp between the two passes.
    array = to_array(random_image(shape, seed=3))
    ours = to_array(Resize(size, interpolation="bicubic")(to_tensor(array))).astype(int)
    pil = np.asarray(Image.fromarray(array).resize(size[::-1], Image.BICUBIC)).astype(int)
    assert np.abs(ours - pil).max() <= 1


def test_resize_shorter_side_keeps_aspect_and_dtype():
    out = Resize(30)(random_image((3, 60, 80)))
    assert out.shape == (3, 30, 40) and out.dtype == torch.uint8
    assert Resize(30)(random_image((2, 3, 80, 60)).float()).shape == (2, 3, 40, 30)


def test_rotate_90_equals_pil_and_30_degrees_is_close_inside():
    array = np.asarray(random_image((3, 5, 7)).permute(1, 2, 0))
    assert np.array_equal(to_array(rotate(to_tensor(array), 90)), np.asarray(Image.fromarray(array).rotate(90)))
    smooth = smooth_image()
    ours = to_array(rotate(to_tensor(smooth), 30, interpolation="bilinear")).astype(int)
    pil = np.asarray(Image.fromarray(smooth).rotate(30, resample=Image.BILINEAR)).astype(int)
    assert np.abs(ours - pil)[20:40, 25:55].max() <= 1


def test_rotation_fills_uncovered_corners():
    img = torch.full((1, 9, 9), 200, dtype=torch.uint8)
    out = RandomRotation((45, 45), fill=7)(img, generator=gen())
    assert out[0, 0, 0] == 7 and out[0, 4, 4] == 200


def test_colour_jitter_with_factor_one_is_the_identity():
    img = random_image((2, 3, 16, 16))
    assert torch.equal(ColorJitter(0, 0, 0, 0)(img, generator=gen()), img)
    exact_one = ColorJitter((1, 1), (1, 1), (1, 1), 0)
    assert torch.equal(exact_one(img, generator=gen()), img)


def test_hue_shift_zero_round_trips_exactly():
    img = random_image((3, 16, 16))
    out = (adjust_hue(img.float() / 255, 0.0) * 255).round().to(torch.uint8)
    assert torch.equal(out, img)
    full_turn = hsv_to_rgb(rgb_to_hsv(img.float() / 255))
    assert torch.equal((full_turn * 255).round().to(torch.uint8), img)


def test_hue_shift_matches_colorsys():
    rgb = torch.rand(3, 4, 5, generator=gen(2))
    ours = adjust_hue(rgb, 0.3)
    for i in range(4):
        for j in range(5):
            h, s, v = colorsys.rgb_to_hsv(*rgb[:, i, j].tolist())
            expected = colorsys.hsv_to_rgb((h + 0.3) % 1.0, s, v)
            assert ours[:, i, j].tolist() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("factor", [0.5, 1.3])
def test_brightness_and_saturation_match_pil_enhance(factor):
    array = np.asarray(random_image((3, 12, 12)).permute(1, 2, 0))
    img = to_tensor(array)
    jitter_b = ColorJitter(brightness=(factor, factor))
    jitter_s = ColorJitter(saturation=(factor, factor))
    pil_b = np.asarray(ImageEnhance.Brightness(Image.fromarray(array)).enhance(factor)).astype(int)
    pil_s = np.asarray(ImageEnhance.Color(Image.fromarray(array)).enhance(factor)).astype(int)
    assert np.abs(to_array(jitter_b(img, generator=gen())).astype(int) - pil_b).max() <= 1
    # PIL rounds its grey image to uint8 before blending: allow that rounding times the factor.
    assert np.abs(to_array(jitter_s(img, generator=gen())).astype(int) - pil_s).max() <= 2


def test_contrast_zero_gives_the_mean_grey():
    img = random_image((3, 8, 8))
    out = ColorJitter(contrast=(0, 0))(img, generator=gen())
    grey = (img.float() * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0).mean()
    assert torch.equal(out, torch.full_like(img, int(grey.round())))


def test_normalize_with_batch_statistics_gives_zero_mean_unit_std():
    batch = random_image((8, 3, 10, 10))
    as_float = batch.float() / 255
    mean = as_float.mean(dim=(0, 2, 3))
    std = as_float.std(dim=(0, 2, 3), unbiased=False)
    out = Normalize(mean.tolist(), std.tolist())(batch)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(Normalize([0.5], [0.25])(batch[:, :1]), (as_float[:, :1] - 0.5) / 0.25)


def test_normalize_refuses_a_channel_mismatch():
    with pytest.raises(ValueError, match="channel"):
        Normalize([0.5], [0.5])(random_image((3, 4, 4)))


def test_match_channels_repeats_grey_and_takes_luminance_like_pil():
    grey = random_image((1, 6, 6))
    assert torch.equal(MatchChannels(3)(grey), grey.repeat(3, 1, 1))
    array = np.asarray(random_image((3, 6, 6)).permute(1, 2, 0))
    ours = MatchChannels(1)(to_tensor(array))[0].numpy().astype(int)
    assert np.abs(ours - np.asarray(Image.fromarray(array).convert("L")).astype(int)).max() <= 1


def test_random_erasing_blanks_one_box_inside_the_scale():
    img = torch.full((3, 40, 40), 255, dtype=torch.uint8)
    out = RandomErasing(1.0, scale=(0.1, 0.2), value=0)(img, generator=gen(4))
    erased = (out == 0).all(dim=0)
    rows, cols = erased.any(dim=1).nonzero(), erased.any(dim=0).nonzero()
    box_area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert erased.sum() == box_area
    assert 0.1 * 1600 * 0.8 <= box_area <= 0.2 * 1600 * 1.2
    assert torch.equal(RandomErasing(0.0)(img, generator=gen()), img)


def full_augment() -> Compose:
    return Compose(
        [
            RandomResizedCrop(24),
            RandomHorizontalFlip(),
            RandomRotation(20, interpolation="bilinear"),
            ColorJitter(0.4, 0.4, 0.4, 0.1),
            ToFloat(),
            RandomErasing(0.5, value="random"),
        ]
    )


def test_same_seed_same_output_different_seed_different():
    batch = random_image((4, 3, 40, 50))
    first = full_augment()(batch, generator=gen(11))
    assert torch.equal(first, full_augment()(batch, generator=gen(11)))
    assert not torch.equal(first, full_augment()(batch, generator=gen(12)))


def test_random_transforms_need_an_explicit_generator():
    with pytest.raises(ValueError, match="generator"):
        RandomHorizontalFlip()(random_image())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_output_matches_cpu():
    batch = random_image((4, 3, 40, 50))
    cpu = full_augment()(batch, generator=gen(5))
    cuda = full_augment()(batch.cuda(), generator=gen(5))
    assert cuda.device.type == "cuda"
    # The geometry and factors are identical; float kernels differ by rounding on a few pixels.
    assert (cuda.cpu() - cpu).abs().gt(0.05).float().mean() < 0.01
