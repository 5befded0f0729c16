"""Depthwise convolution (groups = C_in, one input channel per group; Howard et al. 2017, MobileNet).

A GEMM with one input channel per group is all overhead, so the output is accumulated as a sum over
the kH*kW kernel offsets of shifted input windows times per-channel weights. Each sample is moved
to channels-last (H, W, C) layout first: a shifted window then starts on a whole pixel, so NumPy's
inner loops run over contiguous, aligned runs of W_out*C values against one contiguous weight
vector, roughly twice as fast as per-row scalars on misaligned NCHW slices. Samples are processed
one at a time (the working set stays in cache) and split over threads, one per core, as BLAS
splits the dense path (NumPy releases the GIL inside its loops).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

import numpy as np

from cnnkit.engine._utils import ConvGeometry, padded_hw, unpad_spatial

T = TypeVar("T")
# Below this many output elements, starting threads costs more than it saves.
_PARALLEL_MIN_ELEMENTS = 1 << 18


def _worker_count() -> int:
    """Cores this process may use: NumPy's elementwise loops are single-threaded, BLAS is not."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _over_samples(work: Callable[[range], T], n: int, elements: int) -> list[T]:
    """Run `work` on contiguous sample ranges, in parallel threads when the batch is big enough.

    Ranges are fixed per worker, so results do not depend on thread timing.
    """
    workers = min(n, _worker_count()) if elements >= _PARALLEL_MIN_ELEMENTS else 1
    ranges = [range(n * t // workers, n * (t + 1) // workers) for t in range(workers)]
    if workers == 1:
        return [work(ranges[0])]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, ranges))


def _offsets(geo: ConvGeometry) -> list[tuple[int, tuple[slice, slice]]]:
    """(k = i*kW + j, (rows, cols) of the padded input that offset (i, j) touches)."""
    return [
        (i * geo.kernel[1] + j, geo.offset_slices(i, j)) for i in range(geo.kernel[0]) for j in range(geo.kernel[1])
    ]


class _ChannelsLastPad:
    """A reusable zero-padded (H_p, W_p, C) buffer holding one sample at a time, channels last."""

    def __init__(self, x_shape: tuple[int, ...], geo: ConvGeometry, dtype: np.dtype):
        self.padded = np.zeros((*padded_hw(x_shape[2:], geo.padding), x_shape[1]), dtype=dtype)
        self.interior = unpad_spatial(self.padded.transpose(2, 0, 1), geo.padding, x_shape[2:])

    def load(self, sample: np.ndarray) -> np.ndarray:
        """Copy a (C, H, W) sample into the interior (the zero border is never written)."""
        self.interior[...] = sample
        return self.padded


def depthwise_forward(x: np.ndarray, w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """y (N, C*m, H_out, W_out) of x (N, C, H, W) with w (C*m, 1, kH, kW)."""
    n, c = x.shape[:2]
    multiplier = w.shape[0] // c
    # (kH*kW, C, m): per offset, a contiguous weight row that broadcasts over (H_out, W_out).
    weights = np.ascontiguousarray(w.reshape(c, multiplier, -1).transpose(2, 0, 1))
    y = np.empty((n, w.shape[0], *geo.out_hw), dtype=x.dtype)
    offsets = _offsets(geo)

    def forward_samples(samples: range) -> None:
        pad = _ChannelsLastPad(x.shape, geo, x.dtype)
        accumulator = np.empty((*geo.out_hw, c, multiplier), dtype=x.dtype)
        product = np.empty_like(accumulator)
        for s in samples:
            xp = pad.load(x[s])
            for position, (k, (rows, cols)) in enumerate(offsets):
                window = xp[rows, cols, :, None]
                if position == 0:
                    np.multiply(window, weights[k], out=accumulator)
                else:
                    np.multiply(window, weights[k], out=product)
                    accumulator += product
            y[s] = accumulator.reshape(*geo.out_hw, -1).transpose(2, 0, 1)

    _over_samples(forward_samples, n, y.size)
    return y


def depthwise_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, geo: ConvGeometry
) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dw) of depthwise_forward given dy (N, C*m, H_out, W_out)."""
    n, c = x.shape[:2]
    multiplier = w.shape[0] // c
    weights = np.ascontiguousarray(w.reshape(c, multiplier, -1).transpose(2, 0, 1))
    dx = np.empty_like(x)
    offsets = _offsets(geo)

    def backward_samples(samples: range) -> np.ndarray:
        dw = np.zeros_like(weights)
        pad = _ChannelsLastPad(x.shape, geo, x.dtype)
        dxp = np.empty_like(pad.padded)
        dx_interior = unpad_spatial(dxp.transpose(2, 0, 1), geo.padding, x.shape[2:])
        dy_last = np.empty((*geo.out_hw, c, multiplier), dtype=x.dtype)
        product = np.empty((*geo.out_hw, c), dtype=x.dtype)
        for s in samples:
            xp = pad.load(x[s])
            dy_last.reshape(*geo.out_hw, -1)[...] = dy[s].transpose(1, 2, 0)
            dxp.fill(0)
            for k, (rows, cols) in offsets:
                dw[k] += np.einsum("hwcm,hwc->cm", dy_last, xp[rows, cols])
                if multiplier == 1:
                    np.multiply(dy_last[..., 0], weights[k, :, 0], out=product)
                    dxp[rows, cols] += product
                else:
                    dxp[rows, cols] += np.einsum("hwcm,cm->hwc", dy_last, weights[k])
            dx[s] = dx_interior
        return dw

    dw = sum(_over_samples(backward_samples, n, dy.size))
    return dx, np.ascontiguousarray(dw.transpose(1, 2, 0)).reshape(w.shape)
