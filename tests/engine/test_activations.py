"""Activations and their derivatives against torch autograd, including the kinks (0 for ReLU, 0 and 6 for ReLU6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import assert_matches_torch

from cnnkit.engine import activations as A
from cnnkit.engine._special import erf

# name -> (our forward, our backward, torch function, parameters)
CASES = {
    "relu": (A.relu, A.relu_backward, F.relu, {}),
    "leaky_relu": (A.leaky_relu, A.leaky_relu_backward, lambda t: F.leaky_relu(t, 0.2), {"negative_slope": 0.2}),
    "relu6": (A.relu6, A.relu6_backward, F.relu6, {}),
    "gelu": (A.gelu, A.gelu_backward, F.gelu, {}),
    "gelu_tanh": (A.gelu, A.gelu_backward, lambda t: F.gelu(t, approximate="tanh"), {"approximate": "tanh"}),
    "sigmoid": (A.sigmoid, A.sigmoid_backward, torch.sigmoid, {}),
    "tanh": (A.tanh, A.tanh_backward, torch.tanh, {}),
}
# The kinks and saturation regions, plus values large enough to overflow a naive sigmoid.
SPECIAL_POINTS = np.array([0.0, 6.0, -0.0, 1e-8, -1e-8, 5.999, 6.001, -3.0, 3.0, 40.0, -40.0, 800.0, -800.0])


def _check(name, x, seed=0):
    forward, backward, torch_fn, params = CASES[name]
    dy = np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype)
    x_t = torch.tensor(x, requires_grad=True)
    y_t = torch_fn(x_t)
    y_t.backward(torch.tensor(dy))
    y = forward(x, **params)
    dx = backward(dy, x, **params)
    assert y.dtype == dx.dtype == x.dtype
    assert_matches_torch(y, y_t, name=f"{name} y")
    assert_matches_torch(dx, x_t.grad, name=f"{name} dx")


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(sorted(CASES)),
    st.sampled_from([np.float32, np.float64]),
    st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)),
    st.floats(0.1, 10.0),
    st.integers(0, 2**16),
)
def test_activation_matches_torch_on_random_inputs(name, dtype, shape, spread, seed):
    x = (np.random.default_rng(seed).standard_normal(shape) * spread).astype(dtype)
    _check(name, x, seed)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_matches_torch_at_kinks_and_extremes(name, dtype):
    _check(name, SPECIAL_POINTS.astype(dtype))


def test_relu_family_gradients_at_kinks_follow_torch_conventions():
    x = np.array([0.0, 6.0])
    ones = np.ones(2)
    assert A.relu_backward(ones, x).tolist() == [0.0, 1.0]
    assert A.relu6_backward(ones, x).tolist() == [0.0, 0.0]
    assert A.leaky_relu_backward(ones, x, 0.1).tolist() == [0.1, 1.0]


def test_erf_agrees_with_math_erf_everywhere():
    z = np.concatenate([np.linspace(-8.0, 8.0, 20001), [np.inf, -np.inf]])
    expected = np.array([math.erf(v) for v in z])
    assert np.abs(erf(z) - expected).max() < 1e-14
    assert np.isnan(erf(np.array([np.nan]))[0])


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        A.gelu(np.zeros(3), approximate="fast")


@pytest.mark.parametrize("name", sorted(CASES))
def test_backward_refuses_a_dy_of_another_shape_and_keeps_the_input_dtype(name):
    """A (N, C, 1, 1) dy broadcast silently against an (N, C, H, W) input; sigmoid's and tanh's dx
    took float64 from a float64 dy while the input was float32."""
    _, backward, _, params = CASES[name]
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"dy must have the input's shape \(2, 3, 4, 4\), got \(2, 3, 1, 1\)"):
        backward(np.ones((2, 3, 1, 1), np.float32), x, **params)
    assert backward(np.ones(x.shape), x, **params).dtype == np.float32
