"""Saliency, SmoothGrad, integrated gradients and occlusion against captum (fixtures)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.attributions import integrated_gradients, occlusion, saliency, smoothgrad
from explain.reference_models import (IG_BASELINE, IG_BASELINE_STEPS, IG_STEPS, OCCLUSION_CLIPPED_STRIDE,
                                      OCCLUSION_CLIPPED_WINDOW, OCCLUSION_STRIDE, OCCLUSION_WINDOW, SMOOTHGRAD_NOISE, SMOOTHGRAD_SAMPLES, SMOOTHGRAD_SEED,
                                      TARGETS, filled, max_difference, resnet_input)

TOLERANCE = 1e-5


def test_saliency_equals_captum(resnet, expected):
    resnet.layer1.train()
    ours = saliency(resnet, resnet_input(), classes=TARGETS)
    assert resnet.layer1.training and not resnet.training  # each module's own mode restored
    assert all(p.grad is None for p in resnet.parameters())
    resnet.layer1.eval()
    assert ours.shape == (2, 3, 64, 64) and ours.min() >= 0
    assert max_difference(ours, expected["saliency"]) < TOLERANCE
    signed = saliency(resnet, resnet_input(), classes=TARGETS, absolute=False)
    assert signed.min() < 0 and torch.equal(signed.abs(), ours)


def test_smoothgrad_equals_captum_noise_tunnel_with_the_same_noise(resnet, expected):
    ours = smoothgrad(resnet, resnet_input(), classes=TARGETS, samples=SMOOTHGRAD_SAMPLES, noise=SMOOTHGRAD_NOISE,
                      generator=torch.Generator().manual_seed(SMOOTHGRAD_SEED), batch_size=3)
    assert max_difference(ours, expected["smoothgrad"]) < TOLERANCE
    assert max_difference(ours, expected["saliency"]) > 100 * TOLERANCE  # the noise did something


@pytest.mark.parametrize("method", ["riemann_trapezoid", "gausslegendre"])
@pytest.mark.parametrize("case", ["", "_baseline"])
def test_integrated_gradients_equal_captum_with_delta(resnet, expected, method, case):
    baseline, steps = (IG_BASELINE, IG_BASELINE_STEPS) if case else (0.0, IG_STEPS)
    result = integrated_gradients(resnet, resnet_input(), classes=TARGETS, steps=steps, method=method,
                                  baseline=baseline, batch_size=3)
    assert max_difference(result.attributions, expected[f"ig_{method}{case}"]) < TOLERANCE
    assert max_difference(result.delta, expected[f"ig_{method}{case}_delta"]) < TOLERANCE
    assert float(result.attributions.abs().max()) > 1000 * TOLERANCE  # the comparison is not of zeros


def test_integrated_gradients_delta_shrinks_as_steps_grow():
    model = filled("compact_cnn")
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for method in ("riemann_trapezoid", "gausslegendre"):
        deltas = [integrated_gradients(model, x, steps=steps, method=method).delta.abs().max().item()
                  for steps in (2, 8, 64)]
        assert deltas[0] > deltas[1] > deltas[2], (method, deltas)


def test_integrated_gradients_of_a_linear_model_have_closed_forms():
    """A linear model's gradient is constant: Gauss-Legendre (weights summing to 1) is exact at any
    steps; captum's trapezoid step sizes 1/steps, halved at both ends, sum to (steps - 1)/steps, so
    its attributions are that share of the exact ones and its delta is -1/steps of the gain."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).double()
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = model[1].weight.detach()[[0, 2]].reshape(2, 3, 2, 2) * (x - 0.5)
    for steps in (1, 3):
        result = integrated_gradients(model, x, classes=[0, 2], steps=steps, method="gausslegendre", baseline=0.5)
        assert torch.allclose(result.attributions, exact, atol=1e-6)  # float32 step sizes, as captum's
        assert result.delta.abs().max() < 1e-6
    result = integrated_gradients(model, x, classes=[0, 2], steps=4, method="riemann_trapezoid", baseline=0.5)
    assert torch.allclose(result.attributions, exact * 3 / 4, atol=1e-12)
    assert torch.allclose(result.delta, -exact.flatten(1).sum(1) / 4, atol=1e-12)


def test_occlusion_equals_captum(resnet, expected):
    ours = occlusion(resnet, resnet_input(), classes=TARGETS, window=OCCLUSION_WINDOW, stride=OCCLUSION_STRIDE,
                     batch_size=20)
    assert max_difference(ours, expected["occlusion"]) < TOLERANCE


def test_occlusion_equals_captum_where_the_last_window_hangs_over_the_border(resnet, expected):
    """(64 - 20) / 8 is not whole: captum slides ceil(44 / 8) + 1 = 7 windows per side, the last
    one clipped at the border, so the last 4 rows and columns are attributed too."""
    ours = occlusion(resnet, resnet_input(), classes=TARGETS, window=OCCLUSION_CLIPPED_WINDOW,
                     stride=OCCLUSION_CLIPPED_STRIDE, batch_size=49)
    assert float(ours[..., -4:].abs().min()) > 0
    assert max_difference(ours, expected["occlusion_clipped"]) < TOLERANCE


def test_bad_arguments_are_clear_errors(resnet):
    x = resnet_input()
    with pytest.raises(CnnkitError, match="unknown integration method 'simpson'"):
        integrated_gradients(resnet, x, method="simpson")
    with pytest.raises(CnnkitError, match="window must be a positive int"):
        occlusion(resnet, x, window=0)
    with pytest.raises(CnnkitError, match="images must be a float tensor"):
        saliency(resnet, x[0])
    with pytest.raises(CnnkitError, match="smoothgrad needs samples >= 1"):
        smoothgrad(resnet, x, samples=0)
    for method in (integrated_gradients, occlusion):  # range() with step 0 raised a ValueError before
        with pytest.raises(CnnkitError, match="batch_size must be >= 1, got 0"):
            method(resnet, x, batch_size=0)
