"""batch_norm against torch's BatchNorm1d/2d: outputs, running statistics over several steps, eval mode, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import assert_matches_torch

from cnnkit.engine.norm import batch_norm, batch_norm_backward

STEPS = 5


def _torch_bn(shape, gamma, beta, momentum, eps):
    layer = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(
        shape[1], momentum=momentum, eps=eps, dtype=torch.float64 if gamma.dtype == np.float64 else torch.float32
    )
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(gamma))
        layer.bias.copy_(torch.tensor(beta))
    return layer


def _step(layer, x, dy, gamma, beta, running_mean, running_var, training, momentum, eps):
    """One forward+backward in both libraries, comparing y, dx, dgamma, dbeta."""
    layer.train(training)
    layer.zero_grad()
    x_t = torch.tensor(x, requires_grad=True)
    y_t = layer(x_t)
    y_t.backward(torch.tensor(dy))
    y, cache = batch_norm(x, gamma, beta, running_mean, running_var, training=training, momentum=momentum, eps=eps)
    dx, dgamma, dbeta = batch_norm_backward(dy, cache)
    assert y.dtype == dx.dtype == x.dtype
    assert_matches_torch(y, y_t, name="y")
    assert_matches_torch(dx, x_t.grad, name="dx")
    assert_matches_torch(dgamma, layer.weight.grad, name="dgamma")
    assert_matches_torch(dbeta, layer.bias.grad, name="dbeta")


@settings(max_examples=30, deadline=None)
@given(
    st.one_of(
        st.tuples(st.integers(2, 6), st.integers(1, 4)),
        st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 5), st.integers(2, 5)),
    ),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from([0.1, 0.3]),
    st.sampled_from([1e-5, 1e-3]),
    st.integers(0, 2**16),
)
def test_batch_norm_training_steps_then_eval_match_torch(shape, dtype, momentum, eps, seed):
    """Several training steps (running statistics updated in place), then eval steps with them."""
    rng = np.random.default_rng(seed)
    channels = shape[1]
    gamma = rng.standard_normal(channels).astype(dtype)
    beta = rng.standard_normal(channels).astype(dtype)
    running_mean, running_var = np.zeros(channels, dtype), np.ones(channels, dtype)
    layer = _torch_bn(shape, gamma, beta, momentum, eps)
    for step in range(STEPS + 2):
        training = step < STEPS
        x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        _step(layer, x, dy, gamma, beta, running_mean, running_var, training, momentum, eps)
        assert_matches_torch(running_mean, layer.running_mean, name=f"running_mean after step {step}")
        assert_matches_torch(running_var, layer.running_var, name=f"running_var after step {step}")


def test_batch_norm_without_affine_or_tracking_matches_torch():
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2))
    dy = np.random.default_rng(1).standard_normal(x.shape)
    x_t = torch.tensor(x, requires_grad=True)
    y_t = torch.nn.functional.batch_norm(x_t, None, None, training=True)
    y_t.backward(torch.tensor(dy))
    for training in (True, False):  # no running stats: batch statistics in both modes, as torch
        y, cache = batch_norm(x, None, None, None, None, training=training)
        assert_matches_torch(y, y_t, name="y")
        assert_matches_torch(batch_norm_backward(dy, cache)[0], x_t.grad, name="dx")


def test_batch_norm_training_needs_two_values_per_channel():
    with pytest.raises(ValueError, match="more than 1 value"):
        batch_norm(np.zeros((1, 3)), None, None, np.zeros(3), np.ones(3), training=True)
