"""Decode one image file with Pillow into an upright uint8 tensor (C, H, W), C = 3 (RGB) or 1 (L).

Every step a real photo collection needs is here: the pixel-count guard read from the header
before any pixel is decoded, JPEG draft mode for a size hint, EXIF orientation, and mode
conversion (alpha composited on a background, 16-bit and float images scaled to 8 bits).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Literal

import numpy as np
import torch
from PIL import Image, ImageOps

# Pillow's own default guard (Image.MAX_IMAGE_PIXELS), passed explicitly instead of mutated.
DEFAULT_MAX_PIXELS = 89_478_485
# Composite background for transparent pixels: white, like a browser or viewer shows them.
DEFAULT_BACKGROUND = (255, 255, 255)
# EXIF orientation values that swap width and height (rotations by 90 or 270 degrees).
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION_TAG = 0x0112

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
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise BadImageError(name, f"over the pixel limit: {width}x{height} > {max_pixels} pixels")
    if width <= 0 or height <= 0:
        image.close()
        raise BadImageError(name, f"empty image size {width}x{height}")
    return image


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
    result stays at or above the hint (Image.draft), a large speed-up for big photos.
    `mode` forces "RGB" (C=3) or "L" (C=1); None keeps colour images RGB and grey ones L.
    Transparent pixels are composited on `background`. Bad files raise `BadImageError`.
    """
    name = _name_of(source)
    with open_checked(source, max_pixels=max_pixels) as image:
        try:
            pixels = _decode_pixels(image, size_hint=size_hint, mode=mode, background=background)
        except BadImageError:
            raise
        except Exception as error:  # corrupt data surfaces as OSError, SyntaxError, struct.error, ...
            raise BadImageError(name, f"cannot decode ({error})") from error
    if pixels.ndim == 2:
        # Arrays viewing Pillow's buffer are read-only; torch tensors must own writable memory.
        return torch.from_numpy(pixels[None] if pixels.flags.writeable else pixels[None].copy())
    # NumPy's HWC -> CHW copy is ~30x faster than torch's permute().contiguous() on uint8.
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


def _decode_pixels(
    image: Image.Image,
    *,
    size_hint: SizeHint | None,
    mode: OutputMode | None,
    background: tuple[int, int, int],
) -> np.ndarray:
    """The decoded pixels as (H, W) uint8 for grey or (H, W, 3) uint8 for colour."""
    if size_hint is not None and image.format == "JPEG":
        _apply_draft(image, size_hint)
    image.load()
    upright = ImageOps.exif_transpose(image)
    pixels = to_8bit(upright, background=background)
    if mode == "RGB" and pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if mode == "L" and pixels.ndim == 3:
        return np.asarray(Image.fromarray(pixels, "RGB").convert("L"))
    return pixels


def _apply_draft(image: Image.Image, size_hint: SizeHint) -> None:
    """Ask the JPEG decoder for the smallest 1/2^k scale still at or above the target size."""
    target = (size_hint, size_hint) if isinstance(size_hint, int) else tuple(size_hint)
    orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    if orientation in _TRANSPOSING_ORIENTATIONS:
        # The hint is for the upright image; the stored one is rotated by 90 degrees.
        target = (target[1], target[0])
    if target[0] < image.width or target[1] < image.height:
        draft_mode = "RGB" if image.mode == "RGB" else image.mode
        image.draft(draft_mode, (int(target[0]), int(target[1])))


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
    else:
        scaled = (data - low) * 255.0 / (high - low)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _name_of(source: ImageInput) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", "<stream>"))
