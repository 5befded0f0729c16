"""Effective receptive field: single-conv oracle, support inside the theoretical RF, sqrt(n) growth."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from torch import nn

from cnnkit.analysis.effective_rf import effective_receptive_field
from cnnkit.analysis.plots import plot_effective_rf
from cnnkit.errors import CnnkitError

matplotlib.use("Agg")


def conv_stack(depth: int, *, relu: bool, seed: int = 0) -> nn.Sequential:
    """`depth` 3x3 'same' convs, He-initialised with zero bias (seeded, global RNG restored)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for index in range(depth):
            conv = nn.Conv2d(1 if index == 0 else 8, 8, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers.append(conv)
            if relu:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)


def test_single_conv_erf_is_the_normalised_absolute_kernel() -> None:
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    erf = effective_receptive_field(conv, (1, 9, 9), generator=torch.Generator().manual_seed(0), num_samples=2)
    # d y[4, 4] / d x[4 + i, 4 + j] = w[1 + i, 1 + j] (cross-correlation), so the map is |w| / sum |w|.
    expected = conv.weight.detach().abs()[0, 0] / conv.weight.detach().abs().sum()
    torch.testing.assert_close(erf.gradient[3:6, 3:6], expected)
    outside = erf.gradient.clone()
    outside[3:6, 3:6] = 0
    assert not outside.any()
    assert erf.theoretical_rf == (3, 3)


@pytest.mark.parametrize("relu", [False, True])
def test_gradient_lies_inside_the_theoretical_rf(relu: bool) -> None:
    erf = effective_receptive_field(conv_stack(6, relu=relu), (1, 33, 33), generator=torch.Generator().manual_seed(1))
    assert erf.theoretical_rf == (13, 13)
    assert erf.gradient.shape == (33, 33)
    assert float(erf.gradient.sum()) == pytest.approx(1.0)
    # Centre unit (16, 16) with a 13-pixel RF sees rows/cols 10..22 only.
    inside = erf.gradient[10:23, 10:23].sum()
    assert float(inside) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("relu", [False, True])
def test_effective_radius_grows_slower_than_the_theoretical_one(relu: bool) -> None:
    generator = torch.Generator().manual_seed(2)
    shallow = effective_receptive_field(conv_stack(8, relu=relu), (1, 65, 65), generator=generator, num_samples=16)
    deep = effective_receptive_field(conv_stack(16, relu=relu), (1, 65, 65), generator=generator, num_samples=16)
    assert (shallow.theoretical_radius, deep.theoretical_radius) == (8.0, 16.0)
    assert deep.radius > shallow.radius
    # Luo et al.: ERF ~ sqrt(n) while RF ~ n, so the ratio drops as depth doubles.
    assert deep.ratio < 0.9 * shallow.ratio
    # Standard deviation: about sqrt(2) times larger, far from the 2x of the theoretical RF.
    assert deep.std < 1.7 * shallow.std


def test_model_state_is_left_as_it_was() -> None:
    model = conv_stack(2, relu=True).train()
    effective_receptive_field(model, (1, 9, 9), generator=torch.Generator().manual_seed(0), num_samples=1)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_each_module_keeps_its_own_mode() -> None:
    """A training model with a frozen (eval) BatchNorm inside comes back exactly so."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 3)).train()
    model[1].eval()
    effective_receptive_field(model, (1, 9, 9), generator=torch.Generator().manual_seed(0), num_samples=1)
    assert [m.training for m in model] == [True, False, True] and model.training


def test_a_model_without_a_feature_map_is_rejected() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    with pytest.raises(CnnkitError, match="feature map"):
        effective_receptive_field(model, (1, 8, 8))


def test_plot_shows_the_gradient_map() -> None:
    import matplotlib.pyplot as plt

    erf = effective_receptive_field(conv_stack(3, relu=False), (1, 17, 17), generator=torch.Generator().manual_seed(0))
    figure = plot_effective_rf(erf)
    try:
        shown = figure.axes[0].images[0].get_array()
        assert shown.shape == (17, 17)
        assert float(abs(shown - erf.gradient.numpy()).max()) == 0.0
    finally:
        plt.close(figure)
