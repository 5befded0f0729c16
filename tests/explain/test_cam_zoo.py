"""Every zoo model, from the registry: Grad-CAM with the default target layer works.

Models are built on the meta device and filled from one seeded generator in float32, with the
name-keyed fill's scales (cheaper than their own initialisation, e.g. VGG's 100M-parameter
head), on the smallest input whose last feature map is at least 2x2.
"""

from __future__ import annotations

import pytest
import torch

from cnnkit.explain.activation_maps import cam
from cnnkit.explain.layers import default_layer_name
from cnnkit.models.factory import create_model, list_models

INPUT_SIDE = {"alexnet": 96, "inception_v3": 107}  # else 64 for RGB models, 32 for grey ones


def quick_fill(key: str, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Uniform values with variance 1/fan_in for weights, in [0.5, 1.5) for norm scales and
    running variances, in [-0.1, 0.1) for biases and means (name_keyed_fill's scales)."""
    unit = torch.rand(shape, generator=generator)
    if key.rsplit(".", 1)[-1] in ("running_var", "weight") and len(shape) == 1:
        return unit.add_(0.5)
    if len(shape) >= 2:
        return unit.mul_(2).sub_(1).mul_((3.0 / shape[1:].numel()) ** 0.5)
    return unit.mul_(0.2).sub_(0.1)


def built(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        model = create_model(name)
    generator = torch.Generator().manual_seed(0)
    weights = {key: quick_fill(key, value.shape, generator) if value.is_floating_point() else torch.zeros_like(
        value, device="cpu") for key, value in model.state_dict().items()}
    model.load_state_dict(weights, strict=True, assign=True)
    return model.eval()


@pytest.mark.parametrize("name", list_models())
def test_gradcam_on_every_zoo_model_is_finite_shaped_and_not_constant(name):
    model = built(name)
    channels = model.default_cfg.input_size[0]
    side = INPUT_SIDE.get(name, 64 if channels == 3 else 32)
    # A smooth, non-constant input (a ramp per channel plus noise).
    ramp = torch.linspace(-1, 1, side)
    x = ramp[None, None, :, None] * ramp[None, None, None, :] + 0.3 * torch.randn(
        1, channels, side, side, generator=torch.Generator().manual_seed(0))
    layer = default_layer_name(model, x)
    raw = cam(model, x, target_layer=layer, normalize=False)
    maps = cam(model, x, target_layer=layer)
    assert maps.shape == raw.shape == (1, side, side)
    assert torch.isfinite(maps).all() and torch.isfinite(raw).all()
    assert 0 <= float(maps.min()) and float(maps.max()) <= 1 + 1e-6
    assert float(raw.std()) > 0, f"{name}: the raw map at {layer} is constant"
