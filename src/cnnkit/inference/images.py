"""Whatever a user holds (a path, bytes, a PIL image, a NumPy array) to an upright uint8 (C, H, W).

Paths and bytes go through `decode_image`: the pixel-count guard before decoding, EXIF
orientation, and the JPEG decode hint (DCT scaling) of the model's evaluation pipeline.
"""

from __future__ import annotations

import io
import os
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from cnnkit.data.decode import (
    DEFAULT_MAX_PIXELS,
    BadImageError,
    OutputMode,
    SizeHint,
    decode_image,
    to_8bit,
)
from cnnkit.data.decode_jpeg import EXIF_ORIENTATION_TAG, apply_orientation

# What `Predictor` accepts per image; a float tensor is taken as already preprocessed.
ImageLike = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray, torch.Tensor]


def source_name(image: Any, index: int) -> str:
    """How reports name an input: its path, else its position in the call ("image 3")."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    return f"image {index}"


def to_uint8_image(image: ImageLike, *, mode: OutputMode, size_hint: SizeHint | None = None,
                   max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "<image>") -> torch.Tensor:
    """One input -> uint8 (C, H, W) in `mode` ("RGB": C=3, "L": C=1); BadImageError if unusable."""
    if isinstance(image, (str, os.PathLike)):
        if os.path.isdir(image):
            raise BadImageError(os.fspath(image), "is a folder, not an image file")
        if not os.path.isfile(image):
            raise BadImageError(os.fspath(image), "no such file")
        return decode_image(image, mode=mode, size_hint=size_hint, max_pixels=max_pixels)
    if isinstance(image, (bytes, bytearray)):
        stream = io.BytesIO(image)
        stream.name = name  # decode errors name the input
        return decode_image(stream, mode=mode, size_hint=size_hint, max_pixels=max_pixels)
    if isinstance(image, Image.Image):
        # Upright as a path would be: Image.open keeps the stored pixels and their EXIF orientation
        # (ImageOps.exif_transpose drops the tag, so a turned image is not turned twice).
        orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
        return _from_array(apply_orientation(to_8bit(image), orientation), mode, name)
    if isinstance(image, np.ndarray):
        return _from_array(image, mode, name)
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8:
        if image.dim() != 3:
            raise BadImageError(name, f"a uint8 tensor must be (C, H, W), got shape {tuple(image.shape)}")
        return _match_channels(image, mode, name)
    raise BadImageError(name, f"unsupported input type {type(image).__name__} (a path, bytes, PIL image, "
                              "uint8 array (H, W) or (H, W, C), or a preprocessed float tensor)")


def _from_array(array: np.ndarray, mode: OutputMode, name: str) -> torch.Tensor:
    if array.dtype != np.uint8:
        raise BadImageError(name, f"arrays must be uint8 (H, W) or (H, W, C), got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] in (2, 4):  # LA / RGBA: alpha composited as in a file
        array = to_8bit(Image.fromarray(np.ascontiguousarray(array)))
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise BadImageError(name, f"arrays must be (H, W) or (H, W, C) with C 1-4, got shape {array.shape}")
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")  # torch wants its own writable buffer
    return _match_channels(torch.from_numpy(array).permute(2, 0, 1), mode, name)


def _match_channels(image: torch.Tensor, mode: OutputMode, name: str) -> torch.Tensor:
    channels = image.shape[0]
    if channels not in (1, 3):
        raise BadImageError(name, f"expected 1 or 3 channels, got {channels}")
    if mode == "RGB" and channels == 1:
        return image.expand(3, -1, -1).contiguous()
    if mode == "L" and channels == 3:
        grey = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy(), "RGB").convert("L")
        return torch.from_numpy(np.asarray(grey).copy())[None]
    return image
