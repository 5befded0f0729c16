"""linear / linear_backward against torch.nn.functional.linear and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import assert_matches_torch

from cnnkit.engine.linear import linear, linear_backward


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 5), st.integers(1, 7), st.integers(1, 6), st.booleans(),
    st.sampled_from([np.float32, np.float64]), st.integers(0, 2**16),
)
def test_linear_matches_torch(n, fan_in, fan_out, with_bias, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, fan_in)).astype(dtype)
    w = rng.standard_normal((fan_out, fan_in)).astype(dtype)
    b = rng.standard_normal(fan_out).astype(dtype) if with_bias else None
    dy = rng.standard_normal((n, fan_out)).astype(dtype)
    x_t, w_t = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    b_t = None if b is None else torch.tensor(b, requires_grad=True)
    y_t = F.linear(x_t, w_t, b_t)
    y_t.backward(torch.tensor(dy))
    y = linear(x, w, b)
    dx, dw, db = linear_backward(dy, x, w)
    assert y.dtype == dx.dtype == dw.dtype == x.dtype
    assert_matches_torch(y, y_t, name="y")
    assert_matches_torch(dx, x_t.grad, name="dx")
    assert_matches_torch(dw, w_t.grad, name="dw")
    if b is not None:
        assert_matches_torch(db, b_t.grad, name="db")


def test_linear_rejects_mismatched_features():
    with pytest.raises(ValueError, match="matching"):
        linear(np.zeros((2, 3)), np.zeros((4, 5)))
