"""Pictures of dataset items for galleries: the model's view as RGB, with a class activation map
laid over it (`cam`, `overlay`), enlarged so small maps stay readable."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.activation_maps import CAM_METHODS, cam
from cnnkit.explain.layers import resolve_target_layer
from cnnkit.explain.interpret import Interpretation
from cnnkit.explain.overlay import overlay
from cnnkit.explain.run_access import RunWithData

DISPLAY_SIDE = 128


def view_to_rgb(view: torch.Tensor) -> np.ndarray:
    """uint8 (C, H, W) with 1 or 3 channels -> uint8 (H, W, 3)."""
    image = view.detach().cpu().numpy().transpose(1, 2, 0)
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]


def enlarge(image: np.ndarray, *, side: int = DISPLAY_SIDE) -> np.ndarray:
    """Repeat pixels by the integer factor that brings the shorter side closest to `side` (at
    least 1): small maps become visible without blurring their dies."""
    factor = max(1, round(side / min(image.shape[:2])))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def check_cam_choice(run: RunWithData, method: str, layer: str | None) -> None:
    """Refuse an unknown map `method` or target `layer` (the error lists the layers with a spatial
    output) before a pass over the data, not after it."""
    if method not in CAM_METHODS:
        raise CnnkitError(f"unknown CAM method {method!r}; choose from {', '.join(CAM_METHODS)}")
    if layer is not None:
        device = next(run.model.parameters()).device
        resolve_target_layer(run.model, layer, torch.zeros((1, *run.summary.default_cfg.input_size), device=device))


def cam_overlays(model: nn.Module, views: torch.Tensor, inputs: torch.Tensor, classes: Sequence[int], *,
                 method: str = "gradcam", target_layer: str | None = None) -> list[np.ndarray]:
    """RGB overlays (H, W, 3) of the `method` map for `classes` (one per item) on each view;
    `inputs` (N, C, H, W) are the model-ready versions of the uint8 `views` (N, C, H, W)."""
    device = next(model.parameters()).device
    maps = cam(model, inputs.to(device), method=method, target_layer=target_layer, classes=[int(c) for c in classes])
    return [overlay(view_to_rgb(view), heat.detach().cpu().numpy()) for view, heat in zip(views, maps)]


def top_loss_tiles(run: RunWithData, interpretation: Interpretation, *, method: str,
                   layer: str | None) -> tuple[list[np.ndarray], list[str]]:
    """Each top loss as image | map of the predicted class side by side, with a caption: true,
    predicted, loss, probability."""
    items = interpretation.top_losses
    if not items:
        return [], []
    views, inputs, _ = run.items(interpretation.split, [item.index for item in items])
    images = [view_to_rgb(view) for view in views]
    overlays = cam_overlays(run.model, views, inputs, [item.predicted for item in items], method=method,
                            target_layer=layer)
    gap = np.full((images[0].shape[0], max(1, images[0].shape[1] // 16), 3), 255, np.uint8)
    images = [np.concatenate([image, gap, heat], axis=1) for image, heat in zip(images, overlays)]
    names = interpretation.class_names
    captions = [f"#{item.index} true {names[item.true]}\npred {names[item.predicted]} p={item.probability:.2f}"
                f" loss={item.loss:.2f}" for item in items]
    return images, captions
