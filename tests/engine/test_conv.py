"""conv2d / conv2d_backward against torch.nn.functional.conv2d and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from oracle import assert_matches_torch

from cnnkit.engine._utils import conv_geometry, output_size, pair, resolve_padding
from cnnkit.engine import conv as conv_module
from cnnkit.engine.conv import conv2d, conv2d_backward

DTYPES = st.sampled_from([np.float32, np.float64])
# torch warns that it copies the input for 'same' with even kernels; that is torch's business.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def int_or_pair(lo: int, hi: int) -> st.SearchStrategy:
    """An int or an (h, w) pair of ints in [lo, hi]: the forms torch accepts for conv params."""
    return st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)))


def _compare_with_torch(x, w, b, stride, padding, dilation, groups, seed):
    """Run forward and backward in both libraries with the same upstream gradient and compare."""
    x_t = torch.tensor(x, requires_grad=True)
    w_t = torch.tensor(w, requires_grad=True)
    b_t = None if b is None else torch.tensor(b, requires_grad=True)
    y_t = F.conv2d(x_t, w_t, b_t, stride=stride, padding=padding, dilation=dilation, groups=groups)
    dy = np.random.default_rng(seed).standard_normal(tuple(y_t.shape)).astype(x.dtype)
    y_t.backward(torch.tensor(dy))

    y = conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    dx, dw, db = conv2d_backward(dy, x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == x.dtype
    assert_matches_torch(y, y_t, name="y")
    assert_matches_torch(dx, x_t.grad, name="dx")
    assert_matches_torch(dw, w_t.grad, name="dw")
    if b is not None:
        assert_matches_torch(db, b_t.grad, name="db")


@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(int_or_pair(1, 3))
    dilation = draw(int_or_pair(1, 2))
    options = [int_or_pair(0, 2), st.just("valid")]
    if stride in (1, (1, 1)):
        options.append(st.just("same"))
    padding = draw(st.one_of(options))
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    return dict(
        n=draw(st.integers(1, 3)), c_in=c_in, c_out=c_out, h=h, w=w, kernel=(kh, kw), stride=stride,
        padding=padding, dilation=dilation, groups=groups, bias=draw(st.booleans()),
        dtype=draw(DTYPES), seed=draw(st.integers(0, 2**16)),
    )


def _output_is_non_empty(case) -> bool:
    stride, dilation = pair(case["stride"]), pair(case["dilation"])
    sides = resolve_padding(case["padding"], case["kernel"], stride, dilation)
    return all(
        output_size(size, k, s, sum(p), d) >= 1
        for size, k, s, p, d in zip((case["h"], case["w"]), case["kernel"], stride, sides, dilation)
    )


def _arrays(case, c_per_group):
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    x = rng.standard_normal((case["n"], case["c_in"], case["h"], case["w"])).astype(dtype)
    w = rng.standard_normal((case["c_out"], c_per_group, *case["kernel"])).astype(dtype)
    b = rng.standard_normal(case["c_out"]).astype(dtype) if case["bias"] else None
    return x, w, b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(conv_cases())
def test_conv2d_matches_torch_over_random_geometry(case):
    assume(_output_is_non_empty(case))
    x, w, b = _arrays(case, case["c_in"] // case["groups"])
    _compare_with_torch(
        x, w, b, case["stride"], case["padding"], case["dilation"], case["groups"], case["seed"]
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(conv_cases(), st.integers(1, 3))
def test_depthwise_conv_matches_torch(case, multiplier):
    """groups = C_in with one input channel per group (MobileNet's depthwise conv), C_out = m * C_in."""
    case = dict(case, groups=case["c_in"], c_out=case["c_in"] * multiplier)
    assume(_output_is_non_empty(case))
    x, w, b = _arrays(case, 1)
    _compare_with_torch(
        x, w, b, case["stride"], case["padding"], case["dilation"], case["groups"], case["seed"]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_padding_with_even_kernel_pads_bottom_right_like_torch(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 2, 4)).astype(dtype)
    y = conv2d(x, w, padding="same")
    assert y.shape == (2, 4, 7, 6)
    _compare_with_torch(x, w, None, 1, "same", 1, 1, seed=1)


def test_bad_arguments_raise_clear_errors():
    x = np.zeros((1, 4, 8, 8), np.float32)
    with pytest.raises(ValueError, match="groups"):
        conv2d(x, np.zeros((6, 4, 3, 3), np.float32), groups=4)
    with pytest.raises(ValueError, match="same"):
        conv2d(x, np.zeros((2, 4, 3, 3), np.float32), stride=2, padding="same")
    with pytest.raises(ValueError, match="too small"):
        conv2d(x, np.zeros((2, 4, 9, 9), np.float32))
    with pytest.raises(ValueError, match="padding"):
        conv2d(x, np.zeros((2, 4, 3, 3), np.float32), padding="full")
    with pytest.raises(ValueError, match="dy must have shape"):
        conv2d_backward(np.zeros((1, 2, 3, 3), np.float32), x, np.zeros((2, 4, 3, 3), np.float32))


@pytest.mark.parametrize("stride", [1, 2])
def test_large_depthwise_conv_split_over_threads_matches_torch(stride):
    """Big enough (>= 2**18 outputs) for the depthwise path to split the batch over threads."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 8, 192 * stride, 96 * stride)).astype(np.float32)
    w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    _compare_with_torch(x, w, None, stride, 1, 1, 8, seed=4)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_conv_matches_torch(groups, dtype):
    """1x1, stride 1, no padding: the im2col columns are the input itself, reordered."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    w = rng.standard_normal((6, 4 // groups, 1, 1)).astype(dtype)
    _compare_with_torch(x, w, rng.standard_normal(6).astype(dtype), 1, 0, 1, groups, seed=6)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("groups", [1, 2])
def test_batch_split_into_chunks_including_a_partial_last_chunk_matches_torch(monkeypatch, groups, stride):
    """Columns are built chunk by chunk; shrink the chunk budget so 5 samples take 3 chunks (2, 2, 1).

    At stride 2 the input gradient's phase correlations (cropped and padded dy) are chunked too.
    """
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 4, 6, 7))
    w = rng.standard_normal((6, 4 // groups, 3, 2))
    geometry = conv_geometry(x.shape, w.shape, stride, (1, 0), 1, groups)
    # C_in * kH * kW * H_out * W_out * itemsize
    per_sample_bytes = 4 * 3 * 2 * geometry.out_hw[0] * geometry.out_hw[1] * x.itemsize
    monkeypatch.setattr(conv_module, "_COLUMN_CHUNK_BYTES", 2 * per_sample_bytes)
    assert [c.stop - c.start for c in conv_module._Columns(x, geometry).chunks] == [2, 2, 1]
    _compare_with_torch(x, w, rng.standard_normal(6), stride, (1, 0), 1, groups, seed=8)


@pytest.mark.parametrize(
    ("stride", "dilation", "kernel", "padding"),
    [
        (2, 4, (3, 3), 1),  # gcd 2: the taps of one stride phase are dilation / gcd = 2 apart in dy
        ((2, 3), (4, 6), (3, 2), (2, 1)),
        ((4, 2), (6, 4), (4, 3), (3, 0)),
        (3, 3, (3, 3), 0),  # dilation = stride: every tap lands in one phase, 1 apart in dy
        ((3, 4), (2, 1), (5, 5), (2, 2)),  # kernel extent larger than the stride, odd sizes
    ],
    ids=["s2-d4", "s2x3-d4x6", "s4x2-d6x4", "s3-d3", "s3x4-d2x1"],
)
def test_input_gradient_when_stride_and_dilation_share_a_factor(stride, dilation, kernel, padding):
    """The input gradient's stride phases space their taps dilation / gcd(dilation, stride) apart.

    The random-geometry test draws dilations of at most 2, where that spacing is 1 or the
    dilation itself; these cases have a spacing strictly between (e.g. stride 2, dilation 4: 2).
    """
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 4, 23, 19))
    w = rng.standard_normal((6, 2, *kernel))
    _compare_with_torch(x, w, rng.standard_normal(6), stride, padding, dilation, 2, seed=12)
