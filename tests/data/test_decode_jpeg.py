"""The libjpeg-turbo JPEG path of `decode_image` against Pillow as the oracle.

Pillow's own decode (with `draft` for size hints, `ImageOps.exif_transpose` for orientation,
`convert` for modes) gives the expected pixels; a spy on simplejpeg shows which path ran.
The channels-last view `decode_image` returns must give the pipelines the same output as a copy.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image, ImageFile, ImageOps

from cnnkit.data.decode import BadImageError, decode_image
from cnnkit.data.decode_jpeg import apply_orientation
from cnnkit.data.pipeline import eval_pipeline, train_pipeline
from cnnkit.models.base import DefaultCfg

ORIENTATION_TAG = 0x0112


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like (H, W, 3) uint8 image: smooth colour gradients plus sensor-like noise."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(6 * x + 1) * 0.5 + 0.5, np.cos(5 * y) * 0.5 + 0.5, x * y], axis=2) * 200 + 20
    noise = np.random.default_rng(seed).normal(0, 6, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _save_jpeg(path, pixels: np.ndarray, *, orientation: int = 1, **options) -> None:
    exif = Image.Exif()
    if orientation != 1:
        exif[ORIENTATION_TAG] = orientation
    Image.fromarray(pixels).save(path, "JPEG", exif=exif, **options)


def _hwc(image) -> np.ndarray:
    return image.permute(1, 2, 0).numpy().astype(int)


def _assert_same_pixels(ours: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to one grey level (libjpeg-turbo builds may round differently), and unbiased."""
    assert ours.shape == expected.shape
    difference = np.abs(ours.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and difference.mean() <= 0.05


@pytest.fixture
def fast_calls(monkeypatch) -> list[int]:
    """Record every call of simplejpeg's decoder (the fast path), passing it through."""
    calls: list[int] = []
    original = simplejpeg.decode_jpeg

    def spy(data, *args, **kwargs):
        calls.append(len(data))
        return original(data, *args, **kwargs)

    monkeypatch.setattr(simplejpeg, "decode_jpeg", spy)
    return calls


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4"])
@pytest.mark.parametrize("progressive", [False, True])
def test_fast_path_gives_pillows_pixels(tmp_path, fast_calls, subsampling, progressive):
    _save_jpeg(tmp_path / "photo.jpg", _photo(120, 161), quality=90, subsampling=subsampling, progressive=progressive)
    ours = decode_image(tmp_path / "photo.jpg")
    assert fast_calls, "the JPEG should take the libjpeg-turbo path"
    assert ours.dtype == torch.uint8 and ours.shape == (3, 120, 161)
    assert ours.permute(1, 2, 0).is_contiguous(), "a channels-last view of the decoded buffer, no copy"
    _assert_same_pixels(_hwc(ours), np.asarray(Image.open(tmp_path / "photo.jpg").convert("RGB")))


@pytest.mark.parametrize("size", [(1600, 1200), (999, 451), (500, 375)])
@pytest.mark.parametrize("hint", [100, 224, (400, 150), 700])
def test_size_hint_scales_exactly_as_pillow_draft(tmp_path, fast_calls, size, hint):
    _save_jpeg(tmp_path / "big.jpg", _photo(size[1], size[0]), quality=85)
    target = (hint, hint) if isinstance(hint, int) else hint
    with Image.open(tmp_path / "big.jpg") as reference:
        if target[0] < reference.width or target[1] < reference.height:
            reference.draft("RGB", target)
        expected = np.asarray(reference.convert("RGB"))
    ours = decode_image(tmp_path / "big.jpg", size_hint=hint)
    assert fast_calls
    _assert_same_pixels(_hwc(ours), expected)


def test_grey_jpeg_and_mode_conversions_match_pillow(tmp_path, fast_calls):
    grey = _photo(40, 56)[:, :, 1]
    Image.fromarray(grey).save(tmp_path / "grey.jpg", quality=90)
    _save_jpeg(tmp_path / "colour.jpg", _photo(40, 56), quality=90)
    stored_grey = np.asarray(Image.open(tmp_path / "grey.jpg"))
    as_grey = decode_image(tmp_path / "grey.jpg")
    assert as_grey.shape == (1, 40, 56)
    _assert_same_pixels(as_grey[0].numpy(), stored_grey)
    as_rgb = decode_image(tmp_path / "grey.jpg", mode="RGB")
    _assert_same_pixels(_hwc(as_rgb), np.repeat(stored_grey[:, :, None], 3, axis=2))
    luminance = decode_image(tmp_path / "colour.jpg", mode="L")
    assert luminance.shape == (1, 40, 56)
    _assert_same_pixels(luminance[0].numpy(), np.asarray(Image.open(tmp_path / "colour.jpg").convert("L")))
    assert len(fast_calls) == 3


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_exif_transpose(tmp_path, fast_calls, orientation):
    _save_jpeg(tmp_path / "turned.jpg", _photo(48, 80), orientation=orientation, quality=95)
    ours = decode_image(tmp_path / "turned.jpg")
    assert fast_calls
    upright = ImageOps.exif_transpose(Image.open(tmp_path / "turned.jpg"))
    _assert_same_pixels(_hwc(ours), np.asarray(upright.convert("RGB")))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_size_hint_is_for_the_upright_image(tmp_path, fast_calls, orientation):
    # Stored 1600 wide x 800 high; the hint (width, height) = (200, 400) is for the upright image.
    _save_jpeg(tmp_path / "turned.jpg", _photo(800, 1600), orientation=orientation, quality=85)
    with Image.open(tmp_path / "turned.jpg") as reference:
        turns = orientation in (6, 8)
        reference.draft("RGB", (400, 200) if turns else (200, 400))
        expected = np.asarray(ImageOps.exif_transpose(reference).convert("RGB"))
    ours = decode_image(tmp_path / "turned.jpg", size_hint=(200, 400))
    assert ours.shape == ((3, 400, 200) if turns else (3, 400, 800))
    _assert_same_pixels(_hwc(ours), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_is_exif_transpose_exactly(orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = Image.fromarray(stored)
    image.getexif()[ORIENTATION_TAG] = orientation
    assert np.array_equal(apply_orientation(stored, orientation), np.asarray(ImageOps.exif_transpose(image)))


@pytest.mark.parametrize("hint", [None, 30])
def test_multi_picture_jpeg_gives_its_first_picture(tmp_path, fast_calls, hint):
    first, second = Image.fromarray(_photo(64, 96, seed=1)), Image.fromarray(_photo(64, 96, seed=2))
    first.save(tmp_path / "stereo.mpo", "MPO", save_all=True, append_images=[second], quality=90)
    with Image.open(tmp_path / "stereo.mpo") as reference:
        assert reference.format == "MPO" and reference.n_frames == 2
        if hint is not None:
            reference.draft("RGB", (hint, hint))
        expected = np.asarray(reference.convert("RGB"))
    ours = decode_image(tmp_path / "stereo.mpo", size_hint=hint)
    assert fast_calls
    _assert_same_pixels(_hwc(ours), expected)


def test_cmyk_jpeg_falls_back_to_pillow(tmp_path, fast_calls):
    cmyk = Image.fromarray(_photo(24, 32)).convert("CMYK")
    cmyk.save(tmp_path / "print.jpg", quality=95)
    ours = decode_image(tmp_path / "print.jpg")
    assert fast_calls == []
    assert np.array_equal(_hwc(ours), np.asarray(Image.open(tmp_path / "print.jpg").convert("RGB")))


def test_jpeg_libjpeg_warns_about_falls_back_to_pillow(tmp_path, fast_calls):
    _save_jpeg(tmp_path / "clean.jpg", _photo(32, 48), quality=90)
    data = (tmp_path / "clean.jpg").read_bytes()
    # Stray bytes before the end-of-image marker: libjpeg warns ("extraneous bytes"), Pillow decodes.
    (tmp_path / "stray.jpg").write_bytes(data[:-2] + b"\x00\x00" + data[-2:])
    ours = decode_image(tmp_path / "stray.jpg")
    assert fast_calls, "the fast path is tried first"
    assert np.array_equal(_hwc(ours), np.asarray(Image.open(tmp_path / "stray.jpg").convert("RGB")))


def _with_frame_size(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` with its start-of-frame header rewritten to claim width x height (data unchanged)."""
    position = 2
    while jpeg[position + 1] not in (0xC0, 0xC1, 0xC2):
        position += 2 + struct.unpack(">H", jpeg[position + 2 : position + 4])[0]
    size_at = position + 5  # marker (2), length (2), precision (1), then height and width
    return jpeg[:size_at] + struct.pack(">HH", height, width) + jpeg[size_at + 4 :]


def test_pixel_limit_refuses_a_jpeg_before_any_decoder_runs(tmp_path, fast_calls, monkeypatch):
    loads = []
    original_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self) or original_load(self))
    _save_jpeg(tmp_path / "large.jpg", _photo(300, 300), quality=80)
    with pytest.raises(BadImageError, match="over the pixel limit: 300x300 > 10000"):
        decode_image(tmp_path / "large.jpg", max_pixels=10_000)
    bomb = _with_frame_size((tmp_path / "large.jpg").read_bytes(), 9000, 9000)
    (tmp_path / "bomb.jpg").write_bytes(bomb)
    with pytest.raises(BadImageError, match="9000x9000 > 1000000"):
        decode_image(tmp_path / "bomb.jpg", max_pixels=1_000_000)
    assert fast_calls == [] and loads == []
    assert decode_image(tmp_path / "large.jpg", max_pixels=90_000).shape == (3, 300, 300)
    assert fast_calls


def test_fast_path_applies_the_limit_to_libjpegs_reading_of_the_header(tmp_path, fast_calls, monkeypatch):
    # Should libjpeg-turbo read a bigger frame than Pillow did, its size is refused before decoding.
    _save_jpeg(tmp_path / "photo.jpg", _photo(30, 40), quality=80)
    monkeypatch.setattr(simplejpeg, "decode_jpeg_header", lambda data, **_: (5000, 6000, "YCbCr", "420"))
    with pytest.raises(BadImageError, match="6000x5000 > 1000000"):
        decode_image(tmp_path / "photo.jpg", max_pixels=1_000_000)
    assert fast_calls == []


def test_stream_source_decodes_like_a_path(tmp_path, fast_calls):
    _save_jpeg(tmp_path / "photo.jpg", _photo(60, 90), orientation=6, quality=90)
    from_path = decode_image(tmp_path / "photo.jpg", size_hint=20)
    with open(tmp_path / "photo.jpg", "rb") as handle:
        from_file = decode_image(handle, size_hint=20)
    assert np.array_equal(from_path.numpy(), from_file.numpy())
    in_memory = decode_image(io.BytesIO((tmp_path / "photo.jpg").read_bytes()), size_hint=20)
    assert len(fast_calls) == 3
    assert np.array_equal(from_path.numpy(), in_memory.numpy())
    assert from_path.shape == (3, 45, 30)  # stored 90x60 at 1/2 scale, then turned upright


def test_real_photos_decode_like_pillow(hymenoptera_dir, fast_calls):
    photos = sorted((hymenoptera_dir / "train").rglob("*.jpg"))[::40]
    for photo in photos:
        with Image.open(photo) as reference:
            expected = np.asarray(ImageOps.exif_transpose(reference).convert("RGB"))
        _assert_same_pixels(_hwc(decode_image(photo)), expected)
    assert len(fast_calls) == len(photos) > 0


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_pipelines_give_the_same_output_on_the_channels_last_view(tmp_path, interpolation):
    _save_jpeg(tmp_path / "photo.jpg", _photo(150, 200), quality=90)
    cfg = DefaultCfg(input_size=(3, 64, 64), interpolation=interpolation)
    for pipeline in (train_pipeline(cfg), eval_pipeline(cfg)):
        view = decode_image(tmp_path / "photo.jpg", size_hint=pipeline.decode_hint)
        from_view = pipeline(view, generator=torch.Generator().manual_seed(3))
        from_copy = pipeline(view.contiguous(), generator=torch.Generator().manual_seed(3))
        assert torch.equal(from_view, from_copy)
