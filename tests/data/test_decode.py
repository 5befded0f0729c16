"""Decoding: every Pillow mode to upright uint8 (C, H, W), JPEG draft, and the pixel-count guard.

Expected pixels come from how each fixture was built (known colours, the EXIF specification,
the alpha-compositing formula), not from our decoder.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from cnnkit.data.decode import BadImageError, decode_image, read_header, to_8bit

RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


def _pixel(image: torch.Tensor, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in image[:, y, x])


def _close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def test_rgb_and_grey_come_out_as_uint8_chw(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    grey = rgb[:, :, 0].copy()
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(grey).save(tmp_path / "grey.png")
    decoded_rgb = decode_image(tmp_path / "rgb.png")
    decoded_grey = decode_image(tmp_path / "grey.png")
    assert decoded_rgb.dtype == torch.uint8 and decoded_rgb.shape == (3, 5, 7)
    assert np.array_equal(decoded_rgb.permute(1, 2, 0).numpy(), rgb)
    assert decoded_grey.shape == (1, 5, 7) and np.array_equal(decoded_grey[0].numpy(), grey)
    assert decode_image(tmp_path / "grey.png", mode="RGB").shape == (3, 5, 7)
    assert decode_image(tmp_path / "rgb.png", mode="L").shape == (1, 5, 7)


@pytest.mark.parametrize(("orientation", "corner"), [(6, "top-right"), (8, "bottom-left"), (3, "bottom-right")])
def test_exif_orientation_is_applied(tmp_path, orientation, corner):
    # Stored 64 wide x 32 high, a red 16x16 block at the stored top-left, the rest blue.
    stored = np.zeros((32, 64, 3), dtype=np.uint8)
    stored[:, :] = BLUE
    stored[:16, :16] = RED
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "photo.jpg", quality=95, exif=exif)
    image = decode_image(tmp_path / "photo.jpg")
    height, width = image.shape[1:]
    # EXIF 6: stored row 0 is the visual right side, stored column 0 the visual top (90 deg clockwise).
    # EXIF 8: stored row 0 is the visual left side, stored column 0 the visual bottom. EXIF 3: 180 deg.
    expected_size = (32, 64) if orientation == 3 else (64, 32)
    assert (height, width) == expected_size
    x = width - 4 if corner.endswith("right") else 3
    y = height - 4 if corner.startswith("bottom") else 3
    assert _close(_pixel(image, x, y), RED, 40)
    assert _close(_pixel(image, width - 1 - x, height - 1 - y), BLUE, 40)


def test_sixteen_bit_grey_is_divided_by_257(tmp_path):
    values = np.array([[65535, 32896, 0, 257, 514]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    decoded = decode_image(tmp_path / "deep.png")
    assert decoded.tolist() == [[[255, 128, 0, 1, 2]]]


def test_int32_and_float_modes_are_scaled_by_their_range():
    small = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32), "I")
    sixteen_bit = Image.fromarray(np.array([[0, 65535, 32896]], dtype=np.int32), "I")
    signed = Image.fromarray(np.array([[-100, 0, 100]], dtype=np.int32), "I")
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    assert to_8bit(small).tolist() == [[0, 100, 255]]
    assert to_8bit(sixteen_bit).tolist() == [[0, 255, 128]]
    assert to_8bit(signed).tolist() == [[0, 128, 255]]
    assert to_8bit(unit).tolist() == [[0, 128, 255]]


@pytest.mark.filterwarnings("error")  # numpy's divide-by-zero RuntimeWarning, then a NaN cast to uint8
@pytest.mark.parametrize("value", [70000, -5])
def test_a_flat_int32_image_outside_known_ranges_is_zero_without_nan(value):
    flat = Image.fromarray(np.full((2, 3), value, dtype=np.int32), "I")
    assert to_8bit(flat).tolist() == [[0, 0, 0], [0, 0, 0]]


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    la = np.array([[[100, 255], [100, 0], [0, 128]]], dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    decoded = decode_image(tmp_path / "rgba.png")
    assert decoded.shape == (3, 1, 3)
    half = round(255 * (1 - 128 / 255))  # out = src * a + background * (1 - a)
    assert _pixel(decoded, 0, 0) == RED and _pixel(decoded, 1, 0) == WHITE
    assert _close(_pixel(decoded, 2, 0), (half, half, half), 1)
    grey = decode_image(tmp_path / "la.png")
    assert grey.shape == (1, 1, 3)
    assert grey[0, 0, 0] == 100 and grey[0, 0, 1] == 255 and abs(int(grey[0, 0, 2]) - half) <= 1
    on_black = decode_image(tmp_path / "rgba.png", background=(0, 0, 0))
    assert _pixel(on_black, 1, 0) == (0, 0, 0)


def test_palette_with_transparency_and_gif_first_frame(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([*RED, *BLUE] + [0] * 762)
    palette.putdata([0, 1])
    palette.save(tmp_path / "transparent.png", transparency=0)
    decoded = decode_image(tmp_path / "transparent.png")
    assert _pixel(decoded, 0, 0) == WHITE and _pixel(decoded, 1, 0) == BLUE
    frames = [Image.new("RGB", (4, 4), RED), Image.new("RGB", (4, 4), GREEN)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    first = decode_image(tmp_path / "anim.gif")
    assert first.shape == (3, 4, 4) and _pixel(first, 2, 2) == RED


def test_cmyk_and_bilevel_convert(tmp_path):
    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putdata([(255, 0, 0, 0), (0, 0, 0, 255)])  # pure cyan, pure black
    cmyk.save(tmp_path / "cmyk.tiff")
    decoded = decode_image(tmp_path / "cmyk.tiff")
    assert _pixel(decoded, 0, 0) == (0, 255, 255) and _pixel(decoded, 1, 0) == (0, 0, 0)
    bilevel = Image.new("1", (2, 1))
    bilevel.putdata([0, 1])
    bilevel.save(tmp_path / "bits.bmp")
    assert decode_image(tmp_path / "bits.bmp").tolist() == [[[0, 255]]]


@pytest.mark.parametrize(("suffix", "options"), [(".webp", {"lossless": True}), (".bmp", {}), (".tiff", {})])
def test_lossless_formats_round_trip(tmp_path, suffix, options):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / f"image{suffix}", **options)
    assert np.array_equal(decode_image(tmp_path / f"image{suffix}").permute(1, 2, 0).numpy(), rgb)


def test_jpeg_draft_gives_nearest_size_at_or_above_hint(tmp_path):
    Image.new("RGB", (1600, 1200), (30, 120, 200)).save(tmp_path / "big.jpg")
    for hint, expected in [(100, (150, 200)), (200, (300, 400)), (700, (1200, 1600)), ((400, 150), (300, 400))]:
        # The largest 1/2^k reduction keeping both sides >= the hint.
        image = decode_image(tmp_path / "big.jpg", size_hint=hint)
        assert tuple(image.shape[1:]) == expected, hint
        assert _close(_pixel(image, 5, 5), (30, 120, 200), 3)
    assert tuple(decode_image(tmp_path / "big.jpg").shape[1:]) == (1200, 1600)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG whose IHDR claims width x height but whose data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def test_pixel_limit_refuses_before_decoding(tmp_path, monkeypatch):
    Image.new("RGB", (300, 300)).save(tmp_path / "large.png")
    (tmp_path / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))
    calls = []
    original_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: calls.append(self) or original_load(self))
    with pytest.raises(BadImageError, match="over the pixel limit") as refused:
        decode_image(tmp_path / "large.png", max_pixels=10_000)
    assert "300x300" in refused.value.reason
    with pytest.raises(BadImageError, match="over the pixel limit"):
        decode_image(tmp_path / "bomb.png", max_pixels=10**9)  # past Pillow's own guard too
    (tmp_path / "liar.png").write_bytes(_png_claiming(5000, 5000))
    with pytest.raises(BadImageError, match="5000x5000 > 1000000"):
        decode_image(tmp_path / "liar.png", max_pixels=1_000_000)
    assert calls == []
    assert read_header(tmp_path / "large.png").width == 300
    assert decode_image(tmp_path / "large.png", max_pixels=90_000).shape == (3, 300, 300)
    assert calls  # the spy does see a real decode


def test_bad_files_raise_with_reason(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image at all")
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    reasons = {}
    for name in ("empty.jpg", "text.jpg", "cut.jpg"):
        with pytest.raises(BadImageError) as error:
            decode_image(tmp_path / name)
        reasons[name] = error.value.reason
    assert "empty file" in reasons["empty.jpg"]
    assert "not a readable image" in reasons["text.jpg"]
    assert "truncated" in reasons["cut.jpg"]
