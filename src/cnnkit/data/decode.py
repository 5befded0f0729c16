"""Decode one image file into an upright uint8 tensor (C, H, W), C = 3 (RGB) or 1 (L).

Every step a real photo collection needs is here: the pixel-count guard read from the header
before any pixel is decoded, JPEG DCT scaling for a size hint (Pillow's draft rule), EXIF
orientation, and mode conversion (alpha composited on a background, 16-bit and float images
scaled to 8 bits). JPEGs go through libjpeg-turbo (`decode_jpeg`, pixel-identical to Pillow and
faster); everything else, and any JPEG it refuses (CMYK, corrupt data), through Pillow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Literal

import numpy as np
import torch
from PIL import Image

from cnnkit.data.decode_jpeg import (
    EXIF_ORIENTATION_TAG,
    apply_orientation,
    decode_jpeg,
    draft_scale,
    jpeg_size,
    stored_target,
)

# Pillow's own default guard (Image.MAX_IMAGE_PIXELS), passed explicitly instead of mutated.
DEFAULT_MAX_PIXELS = 89_478_485
# Composite background for transparent pixels: white, like a browser or viewer shows them.
DEFAULT_BACKGROUND = (255, 255, 255)
# Pillow's formats for JPEG files: MPO (multi-picture, e.g. stereo cameras) loads its first
# picture, the JPEG stream at the start of the file, which is also what libjpeg-turbo decodes.
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})

OutputMode = Literal["RGB", "L"]
SizeHint = int | tuple[int, int]
ImageInput = str | os.PathLike[str] | BinaryIO


class BadImageError(ValueError):
    """A file that cannot be used as an image; `reason` is the short cause shown in reports."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class ImageHeader:
    """What the file header says, read without decoding pixels: size, Pillow mode and format."""

    width: int
    height: int
    mode: str
    format: str


def open_checked(source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image lazily and refuse it when its header claims more than `max_pixels` pixels.

    Only the header is read here (Image.open is lazy), so a decompression bomb is refused before
    its decoder runs. Pillow's own guard (Image.MAX_IMAGE_PIXELS) still applies and is never changed.
    """
    name = _name_of(source)
    if isinstance(source, (str, os.PathLike)) and os.path.getsize(source) == 0:
        raise BadImageError(name, "empty file (0 bytes)")
    try:
        image = Image.open(source)
    except Image.DecompressionBombError as error:
        raise BadImageError(name, f"over the pixel limit ({error})") from error
    except Exception as error:  # Pillow's format plugins raise many types on malformed headers.
        raise BadImageError(name, f"not a readable image ({error})") from error
    try:
        _check_size(name, image.size, max_pixels)
    except BadImageError:
        image.close()
        raise
    return image


def _check_size(name: str, size: tuple[int, int], max_pixels: int) -> None:
    """Refuse a header size (width, height) over `max_pixels` pixels or with an empty side."""
    width, height = size
    if width * height > max_pixels:
        raise BadImageError(name, f"over the pixel limit: {width}x{height} > {max_pixels} pixels")
    if width <= 0 or height <= 0:
        raise BadImageError(name, f"empty image size {width}x{height}")


def read_header(source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Size, mode and format from the header only, with the pixel-count guard applied."""
    with open_checked(source, max_pixels=max_pixels) as image:
        return ImageHeader(image.width, image.height, image.mode, image.format or "unknown")


def decode_image(
    source: ImageInput,
    *,
    size_hint: SizeHint | None = None,
    mode: OutputMode | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
) -> torch.Tensor:
    """Decode `source` to an upright uint8 tensor (C, H, W).

    `size_hint` ((width, height) or one side) lets JPEG decode at 1/2, 1/4 or 1/8 scale when the
    result stays at or above the hint (Image.draft's rule), a large speed-up for big photos.
    `mode` forces "RGB" (C=3) or "L" (C=1); None keeps colour images RGB and grey ones L.
    Transparent pixels are composited on `background`. Bad files raise `BadImageError`.
    Colour images come back as a channels-last view (strides (1, 3W, 3)) of the decoded
    buffer: no copy, and torch's uint8 resize reads that layout natively.
    """
    name = _name_of(source)
    with open_checked(source, max_pixels=max_pixels) as image:
        try:
            pixels = _decode_pixels(
                image, name=name, size_hint=size_hint, mode=mode, max_pixels=max_pixels, background=background
            )
        except BadImageError:
            raise
        except Exception as error:  # corrupt data surfaces as OSError, SyntaxError, struct.error, ...
            raise BadImageError(name, f"cannot decode ({error})") from error
    if not pixels.flags.writeable or not pixels.flags.c_contiguous:
        # Pillow's buffers are read-only and turned views have negative strides; torch needs neither.
        pixels = pixels.copy()
    if pixels.ndim == 2:
        return torch.from_numpy(pixels[None])
    return torch.from_numpy(pixels).permute(2, 0, 1)


def _decode_pixels(
    image: Image.Image,
    *,
    name: str,
    size_hint: SizeHint | None,
    mode: OutputMode | None,
    max_pixels: int,
    background: tuple[int, int, int],
) -> np.ndarray:
    """The upright pixels as (H, W) uint8 for grey or (H, W, 3) uint8 for colour (maybe a view)."""
    orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    target = None if size_hint is None else stored_target(size_hint, orientation)
    pixels = None
    if image.format in _JPEG_FORMATS and image.mode in ("RGB", "L"):
        grey = mode == "L" or (mode is None and image.mode == "L")
        pixels = _decode_jpeg_fast(image, name=name, target=target, grey=grey, max_pixels=max_pixels)
    if pixels is None:
        pixels = _decode_with_pillow(image, target=target, background=background)
    return apply_orientation(_match_mode(pixels, mode), orientation)


def _decode_jpeg_fast(
    image: Image.Image, *, name: str, target: tuple[int, int] | None, grey: bool, max_pixels: int
) -> np.ndarray | None:
    """libjpeg-turbo's decode of the file behind `image` (stored orientation); None: use Pillow.

    The pixel-count guard is applied again to the size libjpeg-turbo itself reads from the
    header, before it decodes anything.
    """
    image.fp.seek(0)
    data = image.fp.read()
    size = jpeg_size(data)
    if size is None:
        return None
    _check_size(name, size, max_pixels)
    scale = 1 if target is None else draft_scale(size, target)
    return decode_jpeg(data, size=size, scale=scale, grey=grey)


def _decode_with_pillow(
    image: Image.Image, *, target: tuple[int, int] | None, background: tuple[int, int, int]
) -> np.ndarray:
    """Pillow's decode in stored orientation, JPEG draft to `target` (width, height) when given."""
    if target is not None and image.format in _JPEG_FORMATS:
        if target[0] < image.width or target[1] < image.height:
            # Ask the JPEG decoder for the smallest 1/2^k scale still at or above the target size.
            image.draft(image.mode, target)
    image.load()
    return to_8bit(image, background=background)


def _match_mode(pixels: np.ndarray, mode: OutputMode | None) -> np.ndarray:
    """Grey (H, W) to RGB by repetition, RGB (H, W, 3) to L by Pillow's luminance; else as is."""
    if mode == "RGB" and pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if mode == "L" and pixels.ndim == 3:
        return np.asarray(Image.fromarray(pixels, "RGB").convert("L"))
    return pixels


def to_8bit(image: Image.Image, *, background: tuple[int, int, int] = DEFAULT_BACKGROUND) -> np.ndarray:
    """Convert any Pillow mode to (H, W) uint8 (grey) or (H, W, 3) uint8 (colour).

    Alpha (LA, RGBA, P with transparency) is composited on `background`. 16-bit `I;16*` is divided
    by 257 (65535 -> 255, exact and unclamped); `I` and `F` are scaled by their value range
    (see `_scale_to_8bit`). CMYK, YCbCr and palettes become RGB; bilevel `1` becomes L.
    """
    mode = image.mode
    if mode == "L":
        return np.asarray(image)
    if mode == "RGB":
        return np.asarray(image)
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode.startswith("I;16"):
        values = np.asarray(image).astype(np.uint32)
        return ((values + 128) // 257).astype(np.uint8)
    if mode in ("I", "F"):
        return _scale_to_8bit(np.asarray(image), is_float=mode == "F")
    if mode in ("LA", "La"):
        return np.asarray(_composite(image, background).convert("L"))
    if (mode == "P" and "transparency" in image.info) or mode in ("RGBA", "RGBa", "PA"):
        return np.asarray(_composite(image, background))
    if mode == "P":
        palette_mode = image.palette.mode if image.palette is not None else "RGB"
        return np.asarray(image.convert("L" if palette_mode == "L" else "RGB"))
    try:
        return np.asarray(image.convert("RGB"))
    except ValueError as error:
        raise BadImageError(getattr(image, "filename", "") or "<image>", f"unsupported mode {mode}") from error


def _composite(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Alpha-composite an image with alpha on an opaque background colour; the result is RGB."""
    base = Image.new("RGBA", image.size, (*background, 255))
    return Image.alpha_composite(base, image.convert("RGBA")).convert("RGB")


def _scale_to_8bit(values: np.ndarray, *, is_float: bool) -> np.ndarray:
    """Scale a 32-bit int or float image to uint8 by the range its values occupy.

    Floats within [0, 1] are taken as intensities (x255); values within [0, 255] are kept;
    ints within [0, 65535] are 16-bit data (/257); anything else is stretched min..max.
    """
    data = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if is_float and low >= 0.0 and high <= 1.0:
        scaled = data * 255.0
    elif low >= 0.0 and high <= 255.0:
        scaled = data
    elif not is_float and low >= 0.0 and high <= 65535.0:
        scaled = data / 257.0
    else:  # a flat image (high == low) has no range to stretch: it stays at 0, not NaN
        scaled = (data - low) * 255.0 / (high - low) if high > low else np.zeros_like(data)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _name_of(source: ImageInput) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", "<stream>"))
