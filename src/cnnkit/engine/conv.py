"""2-D convolution (cross-correlation, as torch's F.conv2d) and its backward pass, via im2col + GEMM.

The windows of the padded input are read through a copy-free strided view (`window_view`), copied
into GEMM layout (the im2col "columns", Chellapilla et al. 2006) and multiplied by the weight matrix:
for each sample n, y[n] = W @ columns[n], one BLAS GEMM per sample (a batched matmul over the
groups). The batch is walked a few samples at a time through buffers allocated once per call and
reused (`_Columns`, `_ReusedPadding`): small enough to stay in the CPU cache from the im2col copy
to the GEMM that reads it, where whole-batch columns (hundreds of MiB) would be written to and read
back from main memory. Pointwise (1x1, stride 1, unpadded) convolutions skip im2col, the input
being its own column matrix; depthwise convolutions take the dedicated path in `_depthwise`.

Backward: dw is a GEMM of dy with the same columns, summed over the samples. dx is the transposed
convolution; the textbook computes it as W^T @ dy followed by a col2im scatter-add, which here is
replaced by correlations of dy with the flipped kernel, one per stride phase
(`_input_gradient_by_phases`): im2col + GEMM again, the same arithmetic, and no scatter.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from cnnkit.engine._depthwise import depthwise_backward, depthwise_forward
from cnnkit.engine._utils import (
    ConvGeometry,
    IntPair,
    Padding,
    SidePadding,
    check_nchw,
    conv_geometry,
    padded_hw,
    unpad_spatial,
    window_view,
)

# Bytes of im2col columns per batch chunk: at least one sample, and few enough that the padded
# input and the columns stay in the CPU's last-level cache between the copy and the GEMM that
# reads them (see `_Columns`). Measured (benchmarks/RESULTS.md): on an idle 2-core machine this
# runs dense 3x3 fwd+bwd about 1.3x faster than 64 MiB chunks written to and read back from main
# memory; the price is one GEMM per sample, and each multi-threaded BLAS call waits for all its
# threads, which on a machine crowded by other processes makes it slower than fewer, larger calls.
_COLUMN_CHUNK_BYTES = 8 << 20


def _is_depthwise(x: np.ndarray, w: np.ndarray, groups: int) -> bool:
    """One input channel per group and more than one group: the shifted-slice path wins."""
    return groups > 1 and w.shape[1] == 1 and groups == x.shape[1]


def _is_pointwise(geo: ConvGeometry) -> bool:
    """1x1, stride 1, unpadded: each sample's (C_in, H*W) input already is its column matrix."""
    return geo.kernel == (1, 1) and geo.stride == (1, 1) and geo.padding == ((0, 0), (0, 0))


class _Columns:
    """im2col for successive chunks of the batch, per sample in GEMM layout (G, C_in/G*kH*kW, H_out*W_out).

    y[n, g] (C_out/G, H_out*W_out) = W[g] (C_out/G, C_in/G*kH*kW) @ columns[n, g]: each GEMM writes
    one sample's output in (N, C_out, H, W) order, with no transpose afterwards.
    """

    def __init__(self, x: np.ndarray, geo: ConvGeometry):
        self.geo = geo
        self.groups = geo.groups
        self.rows = x.shape[1] // geo.groups * geo.kernel[0] * geo.kernel[1]
        self.positions = geo.out_hw[0] * geo.out_hw[1]
        per_sample = x.shape[1] * geo.kernel[0] * geo.kernel[1] * self.positions
        self.size = max(1, min(x.shape[0], _COLUMN_CHUNK_BYTES // (per_sample * x.itemsize)))
        self.chunks = [slice(start, min(start + self.size, x.shape[0])) for start in range(0, x.shape[0], self.size)]
        self._padded = _ReusedPadding(x, geo.padding, self.size)
        self._buffer = np.empty(per_sample * self.size, dtype=x.dtype)

    def fill(self, chunk: slice) -> np.ndarray:
        """Copy the chunk's windows into the reused buffer: (n, G, C_in/G*kH*kW, H_out*W_out)."""
        g = self.geo
        windows = window_view(self._padded.fill(chunk), g.kernel, g.stride, g.dilation, g.out_hw)
        columns = self._buffer[: windows.size].reshape(windows.shape)
        np.copyto(columns, windows)
        return columns.reshape(windows.shape[0], self.groups, self.rows, self.positions)


class _ReusedPadding:
    """The zero-padded input, one chunk of samples at a time, in a buffer whose zero border is written once.

    Why: padding the whole batch up front is one more pass over memory per im2col (the forward, dw
    and dx each pad); a chunk-sized buffer that only receives the interior stays in cache.
    """

    def __init__(self, x: np.ndarray, padding: SidePadding, size: int):
        self.x = x
        self.unpadded = padding == ((0, 0), (0, 0))
        if not self.unpadded:
            self._buffer = np.zeros((size, x.shape[1], *padded_hw(x.shape[2:], padding)), dtype=x.dtype)
            self._interior = unpad_spatial(self._buffer, padding, x.shape[2:])

    def fill(self, chunk: slice) -> np.ndarray:
        """(n, C, H + pads, W + pads) for the samples of `chunk`."""
        if self.unpadded:
            return self.x[chunk]
        n = chunk.stop - chunk.start
        self._interior[:n] = self.x[chunk]
        return self._buffer[:n]


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    b: Optional[np.ndarray] = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> np.ndarray:
    """Cross-correlate (N, C_in, H, W) `x` with (C_out, C_in/groups, kH, kW) `w`: (N, C_out, H_out, W_out).

    Same semantics as torch.nn.functional.conv2d; padding may be an int, (h, w), 'same' or 'valid'.
    """
    check_nchw(x)
    geo = conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    w = w.astype(x.dtype, copy=False)
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"b must have shape ({w.shape[0]},), got {b.shape}")
    if _is_depthwise(x, w, geo.groups):
        y = depthwise_forward(x, w, geo)
    elif _is_pointwise(geo):
        y = _pointwise_forward(x, w, geo)
    else:
        y = _dense_forward(x, w, geo)
    if b is not None:
        y += b.astype(x.dtype, copy=False)[:, None, None]
    return y


def _dense_forward(x: np.ndarray, w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """im2col + GEMM: y[n, g] = W[g] @ columns[n, g], for every sample n and group g."""
    c_out = w.shape[0]
    weights = w.reshape(geo.groups, c_out // geo.groups, -1)
    y = np.empty((x.shape[0], geo.groups, c_out // geo.groups, geo.out_hw[0] * geo.out_hw[1]), dtype=x.dtype)
    columns = _Columns(x, geo)
    for chunk in columns.chunks:
        for sample_columns, sample_y in zip(columns.fill(chunk), y[chunk]):
            np.matmul(weights, sample_columns, out=sample_y)
    return y.reshape(x.shape[0], c_out, *geo.out_hw)


def _pointwise_forward(x: np.ndarray, w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """1x1 conv without im2col: y[n, g] = W[g] @ x[n, g], one batched matmul over samples and groups."""
    n, c_out = x.shape[0], w.shape[0]
    x_groups = x.reshape(n, geo.groups, x.shape[1] // geo.groups, -1)
    y = np.matmul(w.reshape(geo.groups, c_out // geo.groups, -1), x_groups)
    return y.reshape(n, c_out, *geo.out_hw)


def conv2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dx, dw, db) of conv2d given dy = dL/dy of shape (N, C_out, H_out, W_out).

    dw is a GEMM of dy with the im2col columns; dx is the transposed convolution, computed as
    im2col + GEMM of dy with the flipped, transposed kernel (one per stride phase).
    """
    check_nchw(x)
    geo = conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    expected = (x.shape[0], w.shape[0], *geo.out_hw)
    if dy.shape != expected:
        raise ValueError(f"dy must have shape {expected}, got {dy.shape}")
    dy = dy.astype(x.dtype, copy=False)
    w = w.astype(x.dtype, copy=False)
    db = dy.sum(axis=(0, 2, 3))
    if _is_depthwise(x, w, geo.groups):
        dx, dw = depthwise_backward(dy, x, w, geo)
    elif _is_pointwise(geo):
        dx, dw = _pointwise_backward(dy, x, w, geo)
    else:
        dx, dw = _dense_backward(dy, x, w, geo)
    return dx, dw, db


def _dense_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, geo: ConvGeometry
) -> tuple[np.ndarray, np.ndarray]:
    """dw = sum_n dy[n] @ columns[n]^T, one GEMM per sample and group; dx by `_input_gradient_by_phases`."""
    c_out = w.shape[0]
    columns = _Columns(x, geo)
    dy_groups = dy.reshape(dy.shape[0], geo.groups, c_out // geo.groups, columns.positions)
    dw_t = np.zeros((geo.groups, columns.rows, c_out // geo.groups), dtype=x.dtype)
    for chunk in columns.chunks:
        for sample_columns, sample_dy in zip(columns.fill(chunk), dy_groups[chunk]):
            # dw^T += columns @ dy^T: dy[n] is already (C_out, H_out*W_out), so no copy; OpenBLAS
            # runs this orientation as fast as dy @ columns^T or slightly faster.
            dw_t += np.matmul(sample_columns, sample_dy.swapaxes(-1, -2))
    dx = _input_gradient_by_phases(dy, w, geo, x.shape[2:])
    return dx, np.ascontiguousarray(dw_t.swapaxes(-1, -2)).reshape(w.shape)


def _input_gradient_by_phases(dy: np.ndarray, w: np.ndarray, geo: ConvGeometry, x_hw: tuple[int, int]) -> np.ndarray:
    """dx (N, C_in, H, W) as im2col + GEMM of dy with the flipped, transposed kernel, per stride phase.

    Why: the textbook route (d_columns = W^T @ dy, then col2im) writes a (C_in*kH*kW, positions)
    column gradient and scatter-adds it kH*kW times. Read the other way, input row t receives
    dy[(t - i*d) / s] from every offset i with i*d = t (mod s): for the rows of one phase
    t = a (mod s) that is an ordinary stride-1 correlation of dy with the offsets of that phase,
    flipped. So dx is s_h*s_w small convolutions (one at stride 1) whose outputs interleave, with
    the same GEMM work and no scatter (the "sub-pixel" view of a transposed convolution).
    """
    transposed = _transposed_kernel(w, geo.groups)
    if geo.stride == (1, 1):
        return _phase_correlation(dy, transposed, _phases(geo, 0, x_hw[0])[0], _phases(geo, 1, x_hw[1])[0], geo)
    dx = np.empty((dy.shape[0], transposed.shape[0], *x_hw), dtype=dy.dtype)
    for rows, cols in itertools.product(_phases(geo, 0, x_hw[0]), _phases(geo, 1, x_hw[1])):
        target = dx[:, :, rows.first :: geo.stride[0], cols.first :: geo.stride[1]]
        if rows.taps and cols.taps:
            target[...] = _phase_correlation(dy, transposed, rows, cols, geo)
        else:
            target[...] = 0  # no kernel offset reaches these rows or columns (kernel smaller than stride)
    return dx


def _phase_correlation(
    dy: np.ndarray, transposed: np.ndarray, rows: _Phase, cols: _Phase, geo: ConvGeometry
) -> np.ndarray:
    """The input gradient at one stride phase's rows and columns: a stride-1 im2col + GEMM."""
    kernel = np.ascontiguousarray(transposed[:, :, rows.taps][:, :, :, cols.taps][:, :, ::-1, ::-1])
    (top, bottom), (left, right) = rows.dy_pad, cols.dy_pad
    # Negative sides crop dy (a view); positive ones become the correlation's zero padding.
    window = dy[:, :, max(0, -top) : dy.shape[2] - max(0, -bottom), max(0, -left) : dy.shape[3] - max(0, -right)]
    padding = ((max(0, top), max(0, bottom)), (max(0, left), max(0, right)))
    phase_geo = ConvGeometry(
        kernel.shape[2:], (1, 1), (rows.dilation, cols.dilation), padding, geo.groups, (rows.count, cols.count)
    )
    return _dense_forward(window, kernel, phase_geo)


@dataclass(frozen=True)
class _Phase:
    """Along one axis: the input rows first + s*q (q < count) of one stride phase, the kernel
    offsets `taps` that reach them, the dilation between those taps in dy, and dy's (before, after)
    padding (negative: cropping) for the phase's correlation."""

    first: int
    count: int
    taps: list[int]
    dilation: int
    dy_pad: tuple[int, int]


def _phases(geo: ConvGeometry, axis: int, size: int) -> list[_Phase]:
    """The stride phases of one axis of the input gradient (see `_input_gradient_by_phases`).

    Padded row P = o*s + i*d receives dy[o] through offset i. For the rows P = a + s*q of phase a,
    the offsets with i*d = a (mod s) reach it, from dy row q - m_i with m_i = (i*d) // s; these
    m_i are spaced d / gcd(d, s) apart, which is the dilation of that phase's correlation.
    """
    stride, dilation, kernel = geo.stride[axis], geo.dilation[axis], geo.kernel[axis]
    before, out = geo.padding[axis][0], geo.out_hw[axis]
    phases = []
    for first in range(min(stride, size)):
        residue = (first + before) % stride  # phase of the padded rows holding input rows first, first+s, ...
        q0 = (first + before) // stride  # padded row of input row `first` is residue + s*q0
        count = len(range(first, size, stride))
        taps = [i for i in range(kernel) if (i * dilation) % stride == residue]
        if not taps:
            phases.append(_Phase(first, count, [], 1, (0, 0)))
            continue
        shifts = [(i * dilation) // stride for i in taps]
        step = dilation // math.gcd(dilation, stride)
        # Output q (0-based, of this phase) reads dy rows q0 + q - shifts[-1] + u*step, u < len(taps).
        top = shifts[-1] - q0
        bottom = (q0 + count - 1 - shifts[0]) - (out - 1)
        phases.append(_Phase(first, count, taps, step, (top, bottom)))
    return phases


def _transposed_kernel(w: np.ndarray, groups: int) -> np.ndarray:
    """(C_in, C_out/G, kH, kW): per group, w[g][c_out, c_in] -> [c_in, c_out] (the kernel of dx)."""
    c_out, c_per_group = w.shape[:2]
    per_group = w.reshape(groups, c_out // groups, c_per_group, *w.shape[2:]).swapaxes(1, 2)
    return per_group.reshape(groups * c_per_group, c_out // groups, *w.shape[2:])


def _pointwise_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, geo: ConvGeometry
) -> tuple[np.ndarray, np.ndarray]:
    """1x1 conv gradients without im2col: dx[n, g] = W[g]^T @ dy[n, g], dw[g] = sum_n dy[n, g] @ x[n, g]^T."""
    n, c_out = x.shape[0], w.shape[0]
    x_groups = x.reshape(n, geo.groups, x.shape[1] // geo.groups, -1)
    dy_groups = dy.reshape(n, geo.groups, c_out // geo.groups, -1)
    weights = w.reshape(geo.groups, c_out // geo.groups, -1)
    dx = np.matmul(weights.swapaxes(-1, -2), dy_groups).reshape(x.shape)
    # dw^T = x @ dy^T: the orientation OpenBLAS runs fastest (see _dense_backward).
    dw_t = np.matmul(x_groups, dy_groups.swapaxes(-1, -2)).sum(axis=0)
    return dx, np.ascontiguousarray(dw_t.swapaxes(-1, -2)).reshape(w.shape)
