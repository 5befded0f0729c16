"""A map laid over its image as a colour heat map: pure NumPy plus a matplotlib colormap (no OpenCV)."""

from __future__ import annotations

import numpy as np
import torch

from cnnkit.errors import CnnkitError


def to_rgb_float(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 or float in [0, 1] -> float (H, W, 3) in [0, 1]. Tensors are (H, W) or (C, H, W)
    (torch's layout); arrays (H, W), (H, W, C), or (C, H, W) when the last side is not 1 or 3."""
    is_tensor = isinstance(image, torch.Tensor)
    array = image.detach().cpu().numpy() if is_tensor else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and (is_tensor or array.shape[-1] not in (1, 3)):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise CnnkitError(f"image must be (H, W), (H, W, 3) or (3, H, W), got shape {array.shape}")
    values = array.astype(np.float64) / 255.0 if array.dtype == np.uint8 else array.astype(np.float64)
    return np.repeat(values, 3, axis=-1) if values.shape[-1] == 1 else values


def overlay(image: np.ndarray | torch.Tensor, cam: np.ndarray | torch.Tensor, *, alpha: float = 0.5,
            colormap: str = "jet") -> np.ndarray:
    """uint8 RGB (H, W, 3): (1 - alpha) * image + alpha * colormap(cam), cam (H, W) in [0, 1]
    (values outside are clipped); the image as in `to_rgb_float`."""
    from matplotlib import colormaps

    if not 0 <= alpha <= 1:
        raise CnnkitError(f"alpha must be in [0, 1], got {alpha}")
    if colormap not in colormaps:
        raise CnnkitError(f"unknown matplotlib colormap {colormap!r}")
    rgb = to_rgb_float(image)
    heat = cam.detach().cpu().numpy() if isinstance(cam, torch.Tensor) else np.asarray(cam)
    if heat.shape != rgb.shape[:2]:
        raise CnnkitError(f"cam shape {heat.shape} differs from the image's {rgb.shape[:2]}")
    coloured = colormaps[colormap](np.clip(np.nan_to_num(heat.astype(np.float64)), 0, 1))[..., :3]
    blended = (1 - alpha) * np.clip(rgb, 0, 1) + alpha * coloured
    return np.round(blended * 255).astype(np.uint8)
