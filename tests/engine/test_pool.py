"""Max / average / global-average pooling against torch, including max-pool gradient routing with ties
and ceil mode (torch's output-size rule and clipped average divisors)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from oracle import assert_matches_torch

from cnnkit.engine.pool import (
    avg_pool2d,
    avg_pool2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)


@st.composite
def pool_cases(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    # Small-integer inputs make ties within a window common, exercising the arg-max convention.
    integer_valued = draw(st.booleans())
    return kernel, stride, padding, shape, integer_valued, draw(st.sampled_from([np.float32, np.float64]))


def _input(shape, integer_valued, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, shape) if integer_valued else rng.standard_normal(shape)
    return x.astype(dtype)


def _fits(shape, kernel, padding):
    return all(size + 2 * p >= k for size, k, p in zip(shape[2:], kernel, padding))


def _torch_pool(fn, x, kernel, stride, padding, dy_seed=1, **options):
    x_t = torch.tensor(x, requires_grad=True)
    y_t = fn(x_t, kernel, stride, padding, **options)
    dy = np.random.default_rng(dy_seed).standard_normal(tuple(y_t.shape)).astype(x.dtype)
    y_t.backward(torch.tensor(dy))
    return y_t, x_t.grad, dy


@settings(max_examples=50, deadline=None)
@given(pool_cases())
def test_max_pool_matches_torch_including_ties_and_overlap(case):
    kernel, stride, padding, shape, integer_valued, dtype = case
    assume(_fits(shape, kernel, padding))
    x = _input(shape, integer_valued, dtype)
    y_t, dx_t, dy = _torch_pool(F.max_pool2d, x, kernel, stride, padding)
    assert_matches_torch(max_pool2d(x, kernel, stride, padding), y_t, name="y")
    assert_matches_torch(max_pool2d_backward(dy, x, kernel, stride, padding), dx_t, name="dx")


@settings(max_examples=50, deadline=None)
@given(pool_cases())
def test_avg_pool_matches_torch(case):
    kernel, stride, padding, shape, integer_valued, dtype = case
    assume(_fits(shape, kernel, padding))
    x = _input(shape, integer_valued, dtype)
    y_t, dx_t, dy = _torch_pool(F.avg_pool2d, x, kernel, stride, padding)
    assert_matches_torch(avg_pool2d(x, kernel, stride, padding), y_t, name="y")
    assert_matches_torch(avg_pool2d_backward(dy, x, kernel, stride, padding), dx_t, name="dx")


def test_max_pool_gradient_goes_to_first_maximum_in_row_major_order():
    """Tied windows give the gradient to their first maximum; overlapping windows accumulate.

    Windows (2x2, stride 1) and their first maxima: top-left [1,5;1,5] -> (0,1), top-right
    [5,5;5,5] -> (0,1), bottom-left [1,5;0,0] -> (1,1), bottom-right [5,5;0,0] -> (1,1).
    """
    x = np.array([[[[1.0, 5.0, 5.0], [1.0, 5.0, 5.0], [0.0, 0.0, 0.0]]]])
    dy = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
    x_t = torch.tensor(x, requires_grad=True)
    F.max_pool2d(x_t, 2, 1).backward(torch.tensor(dy))
    dx = max_pool2d_backward(dy, x, 2, 1)
    assert_matches_torch(dx, x_t.grad, name="dx")
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 0, 1] = 1.0 + 10.0
    expected[0, 0, 1, 1] = 100.0 + 1000.0
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avg_pool_matches_torch(dtype):
    x = np.random.default_rng(0).standard_normal((3, 5, 4, 7)).astype(dtype)
    dy = np.random.default_rng(1).standard_normal((3, 5)).astype(dtype)
    x_t = torch.tensor(x, requires_grad=True)
    y_t = F.adaptive_avg_pool2d(x_t, 1).flatten(1)
    y_t.backward(torch.tensor(dy))
    assert_matches_torch(global_avg_pool2d(x), y_t, name="y")
    assert_matches_torch(global_avg_pool2d_backward(dy, x), x_t.grad, name="dx")


def test_pool_rejects_padding_larger_than_half_the_kernel():
    with pytest.raises(ValueError, match="padding"):
        max_pool2d(np.zeros((1, 1, 4, 4)), 2, padding=2)


@pytest.mark.parametrize(
    ("window", "kernel", "stride", "padding"),
    [
        ([[np.nan, 1.0], [np.nan, 2.0]], 2, None, 0),  # torch takes the LAST NaN of a window
        ([[1.0, np.nan], [3.0, np.nan]], 2, None, 0),
        ([[-np.inf, -np.inf], [-np.inf, -np.inf]], 2, 1, 1),  # all -inf: the first cell inside, never the padding
        ([[-np.inf, 2.0, -np.inf], [-np.inf, -np.inf, 1.0], [3.0, -np.inf, -np.inf]], 3, 2, 1),
    ],
    ids=["nan-first", "nan-last", "all-minus-inf-padded", "minus-inf-padded-3x3"],
)
def test_max_pool_gradient_routing_with_nan_and_minus_inf_matches_torch(window, kernel, stride, padding):
    """The old arg-max over the padded window gave the first NaN and sent all -inf windows' gradient into the padding."""
    x = np.array(window)[None, None]
    y_t, dx_t, dy = _torch_pool(F.max_pool2d, x, kernel, stride, padding)
    np.testing.assert_array_equal(max_pool2d(x, kernel, stride, padding), y_t.detach().numpy())
    assert_matches_torch(max_pool2d_backward(dy, x, kernel, stride, padding), dx_t, name="dx")


# Kernel, stride and padding (at most half the kernel, as torch allows) by input sizes 1..9:
# ceil mode adds a last partial window in many of these, and in some the added window would start
# in the right padding, which torch's rule drops again (e.g. size 5, kernel 2, stride 2, padding 1).
CEIL_GRID = [
    (kernel, stride, padding, size)
    for kernel, stride, padding, size in itertools.product((1, 2, 3, 4), (1, 2, 3), (0, 1, 2), range(1, 10))
    if padding <= kernel // 2 and size + 2 * padding >= kernel
]


def test_the_ceil_grid_exercises_the_extra_window_and_the_edge_rule():
    """Torch's output sizes over CEIL_GRID: some gain a window over floor mode, and some lose the
    window that rounding up alone (without the rule) would give."""
    gained = dropped = 0
    for kernel, stride, padding, size in CEIL_GRID:
        ceil = F.max_pool2d(torch.zeros(1, 1, size, size), kernel, stride, padding, ceil_mode=True).shape[-1]
        floor = (size + 2 * padding - kernel) // stride + 1
        rounded_up = -(-(size + 2 * padding - kernel) // stride) + 1
        gained += ceil > floor
        dropped += ceil < rounded_up
    assert gained >= 20 and dropped >= 5, (gained, dropped)


@pytest.mark.parametrize("kernel, stride, padding, size", CEIL_GRID)
def test_ceil_mode_max_and_avg_pool_match_torch(kernel, stride, padding, size):
    """Forward and backward with ceil_mode=True against torch, the average with and without the
    padding in its divisor (torch clips a ceil-mode window at the end of the padded input)."""
    x = _input((2, 2, size, size + 1), False, np.float64, seed=size)
    cases = [(F.max_pool2d, max_pool2d, max_pool2d_backward, {})] + [
        (F.avg_pool2d, avg_pool2d, avg_pool2d_backward, {"count_include_pad": include}) for include in (True, False)
    ]
    for theirs, forward, backward, options in cases:
        y_t, dx_t, dy = _torch_pool(theirs, x, kernel, stride, padding, ceil_mode=True, **options)
        name = f"{theirs.__name__}{options}"
        assert_matches_torch(forward(x, kernel, stride, padding, ceil_mode=True, **options), y_t, name=f"{name} y")
        dx = backward(dy, x, kernel, stride, padding, ceil_mode=True, **options)
        assert_matches_torch(dx, dx_t, name=f"{name} dx")


def test_avg_pool_without_padding_in_the_divisor_matches_torch_in_floor_mode():
    x = _input((1, 2, 7, 6), False, np.float32)
    y_t, dx_t, dy = _torch_pool(F.avg_pool2d, x, 3, 2, 1, count_include_pad=False)
    assert_matches_torch(avg_pool2d(x, 3, 2, 1, count_include_pad=False), y_t, name="y")
    assert_matches_torch(avg_pool2d_backward(dy, x, 3, 2, 1, count_include_pad=False), dx_t, name="dx")
