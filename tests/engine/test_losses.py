"""softmax, log_softmax and softmax_cross_entropy against torch, incl. label smoothing and huge logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import assert_matches_torch

from cnnkit.engine.losses import log_softmax, softmax, softmax_cross_entropy


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6), st.integers(1, 8), st.sampled_from([0.0, 0.1, 0.5]),
    st.sampled_from([np.float32, np.float64]), st.sampled_from([1.0, 30.0, 1000.0]), st.integers(0, 2**16),
)
def test_cross_entropy_matches_torch(n, classes, smoothing, dtype, scale, seed):
    """Large `scale` makes exp overflow unless the implementation shifts by the max."""
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, classes)) * scale).astype(dtype)
    targets = rng.integers(0, classes, n)
    logits_t = torch.tensor(logits, requires_grad=True)
    loss_t = F.cross_entropy(logits_t, torch.tensor(targets), label_smoothing=smoothing)
    loss_t.backward()
    loss, dlogits = softmax_cross_entropy(logits, targets, label_smoothing=smoothing)
    assert isinstance(loss, float) and dlogits.dtype == logits.dtype
    assert_matches_torch(np.array(loss, dtype=dtype), loss_t, name="loss")
    assert_matches_torch(dlogits, logits_t.grad, name="dlogits")


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_log_softmax_match_torch(axis, dtype):
    x = (np.random.default_rng(0).standard_normal((3, 4, 5)) * 50).astype(dtype)
    assert_matches_torch(softmax(x, axis=axis), torch.softmax(torch.tensor(x), dim=axis), name="softmax")
    assert_matches_torch(log_softmax(x, axis=axis), torch.log_softmax(torch.tensor(x), dim=axis), name="log_softmax")


def test_cross_entropy_rejects_out_of_range_targets():
    with pytest.raises(ValueError, match="class indices"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
