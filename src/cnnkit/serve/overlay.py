"""The Grad-CAM overlay of one sample as a PNG data URL, through `cnnkit.explain`."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

from cnnkit.explain import cam, overlay
from cnnkit.inference import Predictor


def gradcam_overlay(predictor: Predictor, sample: torch.Tensor,
                    class_index: int) -> tuple[str, str]:
    """uint8 sample (C, H, W) -> data URLs of (the Grad-CAM map of `class_index` blended on the
    sample, the sample itself). Runs in the inference thread (it needs gradients, so not under
    inference mode)."""
    batch = predictor.normalise(sample[None]).to(predictor.device)
    maps = cam(predictor.model, batch, method="gradcam", classes=[class_index])
    heat = maps[0].detach().cpu().numpy()
    image = sample.expand(3, -1, -1) if sample.shape[0] == 1 else sample
    pixels = image.permute(1, 2, 0).contiguous().numpy()
    blended = overlay(pixels, heat, alpha=0.5)
    return png_data_url(blended), png_data_url(pixels)


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 (H, W, 3) -> "data:image/png;base64,..."."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
