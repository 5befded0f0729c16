"""Max, average and global average pooling over (N, C, H, W) arrays, with torch's semantics.

Windows are read as one strided slice of the padded input per kernel offset; backward passes
scatter-add through the same slices, so overlapping windows accumulate their gradients. With
`ceil_mode` a last partial window counts too (torch's output-size rule, `output_size`): the input
gets extra bottom/right padding for it, which an average never counts.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from cnnkit.engine._utils import (
    ConvGeometry,
    IntPair,
    check_nchw,
    check_positive,
    output_size,
    pad_spatial,
    padded_hw,
    pair,
    unpad_spatial,
)


def _pool_geometry(
    x: np.ndarray, kernel_size: IntPair, stride: Optional[IntPair], padding: IntPair, ceil_mode: bool
) -> ConvGeometry:
    """Validate a pooling call and resolve it as a one-group, undilated window sweep; a ceil-mode
    window reaching past the padded input gets extra bottom/right padding to read."""
    check_nchw(x)
    kernel = check_positive(pair(kernel_size, name="kernel_size"), name="kernel_size")
    strides = kernel if stride is None else check_positive(pair(stride, name="stride"), name="stride")
    pads = pair(padding, name="padding")
    if not (0 <= pads[0] <= kernel[0] // 2 and 0 <= pads[1] <= kernel[1] // 2):
        raise ValueError(f"padding must be between 0 and half the kernel size {kernel}, got {pads}")
    out_hw = tuple(
        output_size(x.shape[2 + a], kernel[a], strides[a], 2 * pads[a], ceil_mode=ceil_mode) for a in range(2)
    )
    if out_hw[0] < 1 or out_hw[1] < 1:
        raise ValueError(f"x of spatial size {x.shape[2:]} is too small for pooling kernel {kernel}")
    sides = tuple(
        (pads[a], max(pads[a], (out_hw[a] - 1) * strides[a] + kernel[a] - x.shape[2 + a] - pads[a])) for a in range(2)
    )
    return ConvGeometry(kernel, strides, (1, 1), sides, 1, out_hw)  # type: ignore[arg-type]


def _offsets(geo: ConvGeometry) -> list[tuple[int, slice, slice]]:
    """(flat window index i*kW + j, rows, cols) for every kernel offset (i, j)."""
    return [
        (i * geo.kernel[1] + j, *geo.offset_slices(i, j)) for i in range(geo.kernel[0]) for j in range(geo.kernel[1])
    ]


def _unpadded_copy(dxp: np.ndarray, geo: ConvGeometry, hw: tuple[int, int]) -> np.ndarray:
    """Contiguous gradient w.r.t. the unpadded input, cut out of the padded one."""
    return np.ascontiguousarray(unpad_spatial(dxp, geo.padding, hw))


def _check_dy(dy: np.ndarray, x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Raise ValueError unless dy has the pooled output's shape; return it in x's dtype."""
    expected = (*x.shape[:2], *out_hw)
    if dy.shape != expected:
        raise ValueError(f"dy must have shape {expected}, got {dy.shape}")
    return dy.astype(x.dtype, copy=False)


def max_pool2d(
    x: np.ndarray,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: IntPair = 0,
    *,
    ceil_mode: bool = False,
) -> np.ndarray:
    """Window maxima of (N, C, H, W) `x`; padding counts as -inf. stride None means kernel_size."""
    geo = _pool_geometry(x, kernel_size, stride, padding, ceil_mode)
    xp = pad_spatial(x, geo.padding, fill=-np.inf)
    (_, first_rows, first_cols), *rest = _offsets(geo)
    y = xp[:, :, first_rows, first_cols].copy()
    for _, rows, cols in rest:
        np.maximum(y, xp[:, :, rows, cols], out=y)
    return y


def max_pool2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: IntPair = 0,
    *,
    ceil_mode: bool = False,
) -> np.ndarray:
    """Route each dy entry to its window's arg-max: the first maximum in row-major order, as torch."""
    geo = _pool_geometry(x, kernel_size, stride, padding, ceil_mode)
    dy = _check_dy(dy, x, geo.out_hw)
    xp = pad_spatial(x, geo.padding, fill=-np.inf)
    winner = _torch_arg_max(xp, geo)
    dxp = np.zeros(xp.shape, dtype=x.dtype)
    for k, rows, cols in _offsets(geo):
        dxp[:, :, rows, cols] += np.where(winner == k, dy, 0)
    return _unpadded_copy(dxp, geo, x.shape[2:])


def _torch_arg_max(xp: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """(N, C, H_out, W_out) flat window index i*kW + j of each window's maximum, as torch picks it.

    torch scans a window in row-major order from its first cell inside the input, taking a value
    that is greater than the best so far or NaN: the first maximum wins, the last NaN wins, and a
    window of -inf routes to its first cell inside the input, never to the padding.
    """
    (pad_h, _), (pad_w, _) = geo.padding  # every window starts inside the input or the top/left padding
    starts_h = np.arange(geo.out_hw[0]) * geo.stride[0]
    starts_w = np.arange(geo.out_hw[1]) * geo.stride[1]
    first_inside = np.maximum(0, pad_h - starts_h)[:, None] * geo.kernel[1] + np.maximum(0, pad_w - starts_w)
    winner = np.broadcast_to(first_inside, (*xp.shape[:2], *geo.out_hw)).copy()
    best = np.full(winner.shape, -np.inf, dtype=xp.dtype)
    for k, rows, cols in _offsets(geo):
        values = xp[:, :, rows, cols]
        taken = (values > best) | np.isnan(values)
        np.copyto(best, values, where=taken)
        np.copyto(winner, k, where=taken)
    return winner


def _window_counts(geo: ConvGeometry, hw: tuple[int, ...], count_include_pad: bool) -> np.ndarray:
    """(H_out, W_out) divisor of each average, as torch: the window's cells inside the padded input
    (a ceil-mode window is clipped at its end), or with `count_include_pad=False` inside the input."""
    counts = []
    for a in range(2):
        before = geo.padding[a][0]
        starts = np.arange(geo.out_hw[a]) * geo.stride[a] - before
        ends = np.minimum(starts + geo.kernel[a], hw[a] + before)
        if not count_include_pad:
            starts, ends = np.maximum(starts, 0), np.minimum(ends, hw[a])
        counts.append(ends - starts)
    return np.outer(counts[0], counts[1])


def avg_pool2d(
    x: np.ndarray,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: IntPair = 0,
    *,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> np.ndarray:
    """Window means of (N, C, H, W) `x`; zero padding counts in the mean unless `count_include_pad`
    is False (torch's divisor, see `_window_counts`)."""
    geo = _pool_geometry(x, kernel_size, stride, padding, ceil_mode)
    xp = pad_spatial(x, geo.padding)
    y = np.zeros((*x.shape[:2], *geo.out_hw), dtype=x.dtype)
    for _, rows, cols in _offsets(geo):
        y += xp[:, :, rows, cols]
    y /= _window_counts(geo, x.shape[2:], count_include_pad).astype(x.dtype)
    return y


def avg_pool2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: IntPair = 0,
    *,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> np.ndarray:
    """Spread each dy entry evenly over its window's cells (its divisor in the forward)."""
    geo = _pool_geometry(x, kernel_size, stride, padding, ceil_mode)
    share = _check_dy(dy, x, geo.out_hw) / _window_counts(geo, x.shape[2:], count_include_pad).astype(x.dtype)
    dxp = np.zeros((*x.shape[:2], *padded_hw(x.shape[2:], geo.padding)), dtype=x.dtype)
    for _, rows, cols in _offsets(geo):
        dxp[:, :, rows, cols] += share
    return _unpadded_copy(dxp, geo, x.shape[2:])


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    """Mean over H and W of (N, C, H, W) `x`: (N, C) (Lin et al. 2014, Network in Network)."""
    check_nchw(x)
    return x.mean(axis=(2, 3))


def global_avg_pool2d_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Spread each (N, C) dy entry evenly over its H*W positions: (N, C, H, W)."""
    check_nchw(x)
    if dy.shape != x.shape[:2]:
        raise ValueError(f"dy must have shape {x.shape[:2]}, got {dy.shape}")
    share = dy.astype(x.dtype, copy=False) / (x.shape[2] * x.shape[3])
    return np.ascontiguousarray(np.broadcast_to(share[:, :, None, None], x.shape))
