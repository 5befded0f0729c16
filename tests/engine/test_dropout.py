"""Inverted dropout semantics (torch's RNG cannot be matched): drop rate, scaling, identity in eval, backward."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.engine.dropout import dropout, dropout_backward


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_drops_at_rate_p_and_scales_survivors(p):
    x = np.random.default_rng(0).standard_normal((200, 500)).astype(np.float32)
    y, mask = dropout(x, p, training=True, rng=np.random.default_rng(1))
    dropped = mask == 0
    # 100k Bernoulli(p) draws: the standard error of the rate is below 0.0016, so 0.01 is > 6 sigma.
    assert abs(dropped.mean() - p) < 0.01
    np.testing.assert_allclose(mask[~dropped], 1.0 / (1.0 - p), rtol=1e-6)
    np.testing.assert_allclose(y, x * mask, rtol=1e-6)
    assert y.dtype == mask.dtype == np.float32
    # Inverted dropout keeps the expectation: the mean of the mask is close to 1.
    assert abs(mask.mean() - 1.0) < 0.05


def test_dropout_is_identity_in_eval_and_for_p_zero():
    x = np.random.default_rng(0).standard_normal((4, 5))
    for y, mask in (dropout(x, 0.5, training=False, rng=np.random.default_rng(0)),
                    dropout(x, 0.0, training=True, rng=np.random.default_rng(0))):
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(mask, np.ones_like(x))


def test_dropout_with_p_one_zeroes_everything():
    y, mask = dropout(np.ones((3, 3)), 1.0, training=True, rng=np.random.default_rng(0))
    assert not y.any() and not mask.any()


def test_dropout_backward_uses_the_forward_mask_and_the_rng_is_explicit():
    x = np.random.default_rng(0).standard_normal((6, 7))
    y1, mask1 = dropout(x, 0.5, training=True, rng=np.random.default_rng(42))
    y2, mask2 = dropout(x, 0.5, training=True, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(mask1, mask2)
    dy = np.random.default_rng(1).standard_normal(x.shape)
    np.testing.assert_array_equal(dropout_backward(dy, mask1), np.where(mask1 == 0, 0.0, 2.0 * dy))


def test_dropout_rejects_invalid_probability():
    with pytest.raises(ValueError, match="p must be"):
        dropout(np.ones(3), 1.5, training=True, rng=np.random.default_rng(0))
