"""Engine layers against their torch twins: output, input gradient, parameter gradients, init."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn
from torch_twin import assert_forward_backward_match, assert_same_state, copy_state_to_torch

from cnnkit import engine as E

DTYPES = [np.float32, np.float64]


def _input(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "options",
    [
        {"kernel_size": 3, "stride": 2, "padding": 1},
        {"kernel_size": (3, 2), "padding": "same", "dilation": 2, "groups": 2, "bias": False},
        {"kernel_size": 1},
    ],
    ids=["stride2", "grouped-dilated-same", "pointwise"],
)
def test_conv2d_matches_torch(dtype: type, options: dict) -> None:
    rng = np.random.default_rng(1)
    ours = E.Conv2d(4, 6, rng=rng, dtype=dtype, **options)
    theirs = copy_state_to_torch(ours, nn.Conv2d(4, 6, **options), dtype)
    assert_forward_backward_match(ours, theirs, _input((2, 4, 9, 7), dtype), rng=rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(dtype: type, bias: bool) -> None:
    rng = np.random.default_rng(2)
    ours = E.Linear(5, 3, bias=bias, rng=rng, dtype=dtype)
    theirs = copy_state_to_torch(ours, nn.Linear(5, 3, bias=bias), dtype)
    assert_forward_backward_match(ours, theirs, _input((4, 5), dtype), rng=rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    ("ours_type", "theirs_type", "shape"),
    [(E.BatchNorm2d, nn.BatchNorm2d, (4, 3, 5, 5)), (E.BatchNorm1d, nn.BatchNorm1d, (8, 3))],
    ids=["2d", "1d"],
)
def test_batch_norm_matches_torch(dtype: type, training: bool, ours_type: type, theirs_type: type, shape: tuple) -> None:
    rng = np.random.default_rng(3)
    ours = ours_type(3, momentum=0.2, dtype=dtype)
    # Non-trivial affine parameters and running statistics, so that eval mode is a real test.
    ours.weight.value[...] = rng.uniform(0.5, 1.5, 3)
    ours.bias.value[...] = rng.standard_normal(3)
    ours.running_mean[...] = rng.standard_normal(3)
    ours.running_var[...] = rng.uniform(0.5, 2.0, 3)
    theirs = copy_state_to_torch(ours, theirs_type(3, momentum=0.2), dtype)
    ours.train(training)
    theirs.train(training)
    assert_forward_backward_match(ours, theirs, _input(shape, dtype) * 2 + 1, rng=rng)
    assert_same_state(ours, theirs)


def test_batch_norm_rejects_wrong_input() -> None:
    with pytest.raises(ValueError, match="BatchNorm2d expects an input of 4 dims"):
        E.BatchNorm2d(3)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="float32 parameters but got a float64 input"):
        E.BatchNorm1d(3)(np.zeros((2, 3), np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (E.ReLU(), nn.ReLU()),
        (E.LeakyReLU(0.2), nn.LeakyReLU(0.2)),
        (E.ReLU6(), nn.ReLU6()),
        (E.GELU(), nn.GELU()),
        (E.GELU("tanh"), nn.GELU("tanh")),
        (E.Sigmoid(), nn.Sigmoid()),
        (E.Tanh(), nn.Tanh()),
        (E.MaxPool2d(3, 2, 1), nn.MaxPool2d(3, 2, 1)),
        (E.AvgPool2d(2), nn.AvgPool2d(2)),
        (E.MaxPool2d(3, 2, 1, ceil_mode=True), nn.MaxPool2d(3, 2, 1, ceil_mode=True)),  # 6 -> 4, not 3
        (E.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
         nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)),
        (E.GlobalAvgPool2d(), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())),
        (E.Flatten(), nn.Flatten()),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_parameter_free_layers_match_torch(dtype: type, ours: E.Module, theirs: nn.Module) -> None:
    x = _input((2, 3, 6, 6), dtype) * 4  # spans ReLU6's upper kink too
    assert_forward_backward_match(ours, theirs.to(torch.float64 if dtype is np.float64 else torch.float32), x, rng=np.random.default_rng(4))


def test_gelu_rejects_unknown_approximation() -> None:
    with pytest.raises(ValueError, match="approximate"):
        E.GELU("erf")


def test_dropout_scales_survivors_and_is_identity_in_eval() -> None:
    layer = E.Dropout(0.25, rng=np.random.default_rng(5))
    x = np.ones((200, 100), np.float32)
    y = layer(x)
    dropped = y == 0
    assert abs(dropped.mean() - 0.25) < 0.01
    np.testing.assert_allclose(y[~dropped], 1 / 0.75, rtol=1e-6)
    dx = layer.backward(np.full_like(x, 2.0))
    np.testing.assert_array_equal(dx == 0, dropped)
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)


def test_dropout_rejects_bad_probability() -> None:
    with pytest.raises(ValueError, match="dropout probability"):
        E.Dropout(1.0, rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    ("ours_factory", "theirs"),
    [
        (lambda rng: E.Conv2d(64, 32, 3, rng=rng), nn.Conv2d(64, 32, 3)),
        (lambda rng: E.Linear(600, 400, rng=rng), nn.Linear(600, 400)),
    ],
    ids=["conv", "linear"],
)
def test_default_init_matches_torch_distribution(ours_factory, theirs: nn.Module) -> None:
    ours = ours_factory(np.random.default_rng(6))
    for name in ("weight", "bias"):
        our_values = getattr(ours, name).value
        their_values = getattr(theirs, name).detach().numpy()
        assert our_values.shape == their_values.shape and our_values.dtype == their_values.dtype
        bound = 1 / np.sqrt(np.prod(their_values.shape[1:]) if name == "weight" else theirs.weight[0].numel())
        # Both uniform on [-bound, bound]: both reach near the bound, never past it.
        for values in (our_values, their_values):
            assert 0.9 * bound < np.abs(values).max() <= bound
    weights = ours.weight.value, theirs.weight.detach().numpy()
    assert abs(weights[0].std() - weights[1].std()) < 0.02 * weights[1].std()


def test_init_is_deterministic_per_rng_and_dtype_selectable() -> None:
    first = E.Conv2d(3, 4, 3, rng=np.random.default_rng(7), dtype=np.float64)
    second = E.Conv2d(3, 4, 3, rng=np.random.default_rng(7), dtype=np.float64)
    assert first.weight.value.dtype == np.float64 and first.weight.grad.dtype == np.float64
    np.testing.assert_array_equal(first.weight.value, second.weight.value)
    with pytest.raises(ValueError, match="float32 or float64"):
        E.Linear(2, 2, rng=np.random.default_rng(0), dtype=np.int32)
    with pytest.raises(ValueError, match="divisible by groups"):
        E.Conv2d(3, 4, 3, groups=2, rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda rng: E.Conv2d(3, 4, 0, rng=rng), "kernel_size must be >= 1"),
        (lambda rng: E.Conv2d(3, 4, (3,), rng=rng), "kernel_size must be an int or an"),
        (lambda rng: E.Conv2d(0, 4, 3, rng=rng), "fan_in 0"),
        (lambda rng: E.Linear(0, 3, rng=rng), "fan_in 0"),
    ],
)
def test_layers_reject_empty_or_malformed_shapes(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(np.random.default_rng(0))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"groups": 0}, "groups must be a positive int, got 0"),  # was a ZeroDivisionError
        ({"groups": -1}, "groups must be a positive int, got -1"),  # was "fan_in 0"
        ({"stride": 0}, "stride must be >= 1"),
        ({"dilation": (1, 0)}, "dilation must be >= 1"),
        ({"padding": -1}, "padding must be non-negative"),
        ({"padding": "full"}, "padding must be an int, an"),
        ({"stride": 2, "padding": "same"}, "padding='same' requires stride 1"),
    ],
)
def test_conv2d_rejects_bad_geometry_when_built_naming_the_argument(options: dict, message: str) -> None:
    """As torch's nn.Conv2d: the layer refuses an unusable setting at construction, not at its first forward."""
    with pytest.raises(ValueError, match=re.escape(message)):
        E.Conv2d(4, 4, 3, rng=np.random.default_rng(0), **options)
