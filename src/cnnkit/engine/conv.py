"""2-D convolution (cross-correlation, as torch's F.conv2d) and its backward pass, via im2col + GEMM.

The windows of the padded input are read through a copy-free strided view (`window_view`), copied
into GEMM layout (the im2col "columns", Chellapilla et al. 2006) and multiplied by the weight matrix
with one BLAS GEMM per group (a batched matmul over the groups). The batch is walked in chunks of
bounded size: the column buffer is allocated once per call and reused, instead of a
multi-hundred-MiB temporary page-faulted in on every call. Pointwise (1x1, stride 1, unpadded)
convolutions skip im2col, the input being its own column matrix; depthwise convolutions take the
dedicated path in `_depthwise`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from cnnkit.engine._depthwise import depthwise_backward, depthwise_forward
from cnnkit.engine._utils import (
    ConvGeometry,
    IntPair,
    Padding,
    check_nchw,
    conv_geometry,
    pad_spatial,
    padded_hw,
    unpad_spatial,
    window_view,
)

# Bytes of im2col columns per batch chunk. Each BLAS call is a synchronisation point of its
# threads, which is costly on a busy machine, so chunks are large (few GEMMs) yet bounded (no
# multi-hundred-MiB temporaries to page-fault in on every call).
_COLUMN_CHUNK_BYTES = 64 << 20


def _is_depthwise(x: np.ndarray, w: np.ndarray, groups: int) -> bool:
    """One input channel per group and more than one group: the shifted-slice path wins."""
    return groups > 1 and w.shape[1] == 1 and groups == x.shape[1]


def _is_pointwise(geo: ConvGeometry) -> bool:
    """1x1, stride 1, unpadded: each sample's (C_in, H*W) input already is its column matrix."""
    return geo.kernel == (1, 1) and geo.stride == (1, 1) and geo.padding == ((0, 0), (0, 0))


class _Columns:
    """im2col in GEMM layout (C_in, kH, kW, n, H_out, W_out) for successive chunks of the batch.

    With the samples inside the columns, one 2-D GEMM per group covers a whole chunk:
    y[g] (C_out/G, n*H_out*W_out) = W[g] (C_out/G, C_in/G*kH*kW) @ columns[g].
    """

    def __init__(self, x: np.ndarray, geo: ConvGeometry):
        xp = pad_spatial(x, geo.padding)
        # (C_in, kH, kW, N, H_out, W_out) view of the windows, samples moved next to the positions.
        self.windows = window_view(xp, geo.kernel, geo.stride, geo.dilation, geo.out_hw).transpose(1, 2, 3, 0, 4, 5)
        self.groups = geo.groups
        per_sample = self.windows[:, :, :, :1].size
        self.size = max(1, _COLUMN_CHUNK_BYTES // (per_sample * x.itemsize))
        self.chunks = [slice(start, min(start + self.size, x.shape[0])) for start in range(0, x.shape[0], self.size)]
        self._buffer = np.empty(per_sample * min(self.size, x.shape[0]), dtype=x.dtype)

    def fill(self, chunk: slice) -> np.ndarray:
        """Copy the chunk's windows into the reused buffer: (G, C_in/G*kH*kW, n*H_out*W_out)."""
        windows = self.windows[:, :, :, chunk]
        columns = self._buffer[: windows.size].reshape(windows.shape)
        np.copyto(columns, windows)
        return columns.reshape(self.groups, -1, windows.shape[3] * windows.shape[4] * windows.shape[5])


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
    """im2col + one GEMM per group and batch chunk."""
    c_out = w.shape[0]
    weights = w.reshape(geo.groups, c_out // geo.groups, -1)
    y = np.empty((x.shape[0], c_out, *geo.out_hw), dtype=x.dtype)
    columns = _Columns(x, geo)
    for chunk in columns.chunks:
        y_chunk = np.matmul(weights, columns.fill(chunk))
        y[chunk] = y_chunk.reshape(c_out, -1, *geo.out_hw).transpose(1, 0, 2, 3)
    return y


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

    dw is a GEMM of dy with the im2col columns; dx is the transposed convolution, computed as a
    GEMM with w^T followed by a col2im scatter-add over the kH*kW kernel offsets.
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
    """Per batch chunk: dw += dy @ columns^T; d_columns = W^T @ dy, scatter-added back (col2im)."""
    n, c_in, h, width = x.shape
    c_out = w.shape[0]
    weights_t = w.reshape(geo.groups, c_out // geo.groups, -1).swapaxes(-1, -2)
    columns = _Columns(x, geo)
    dw_t = np.zeros((geo.groups, weights_t.shape[1], c_out // geo.groups), dtype=x.dtype)
    dx = np.empty_like(x)
    padded_size = padded_hw((h, width), geo.padding)
    for chunk in columns.chunks:
        count = chunk.stop - chunk.start
        # (G, C_out/G, n*H_out*W_out): dy with the samples next to the positions, like the columns.
        dy_t = np.ascontiguousarray(dy[chunk].transpose(1, 0, 2, 3)).reshape(geo.groups, c_out // geo.groups, -1)
        # dw^T = columns @ dy^T: OpenBLAS runs this orientation several times faster than dy @ columns^T.
        dw_t += np.matmul(columns.fill(chunk), dy_t.swapaxes(-1, -2))
        d_columns = np.matmul(weights_t, dy_t).reshape(c_in, *geo.kernel, count, *geo.out_hw)
        dxp = _col2im(d_columns, geo, padded_size)
        dx[chunk] = unpad_spatial(dxp, geo.padding, (h, width)).transpose(1, 0, 2, 3)
    return dx, np.ascontiguousarray(dw_t.swapaxes(-1, -2)).reshape(w.shape)


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


def _col2im(d_columns: np.ndarray, geo: ConvGeometry, padded_hw: tuple[int, int]) -> np.ndarray:
    """Scatter-add (C, kH, kW, n, H_out, W_out) column gradients into a padded (C, n, H, W) gradient.

    Overlapping windows accumulate: one strided add per kernel offset.
    """
    c, n = d_columns.shape[0], d_columns.shape[3]
    dxp = np.zeros((c, n, *padded_hw), dtype=d_columns.dtype)
    for i in range(geo.kernel[0]):
        for j in range(geo.kernel[1]):
            rows, cols = geo.offset_slices(i, j)
            dxp[:, :, rows, cols] += d_columns[:, i, j]
    return dxp
