"""Argument normalisation shared by the engine's spatial ops: (h, w) pairs, padding, window views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

IntPair = Union[int, tuple[int, int]]
Padding = Union[int, tuple[int, int], str]
# ((top, bottom), (left, right)): explicit per-side padding, as torch's 'same' can be asymmetric.
SidePadding = tuple[tuple[int, int], tuple[int, int]]


def pair(value: IntPair, *, name: str = "value") -> tuple[int, int]:
    """Return `value` as an (h, w) pair of ints: an int is used for both dimensions."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")


def resolve_padding(
    padding: Padding, kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> SidePadding:
    """Turn an int, (h, w), 'valid' or 'same' padding into ((top, bottom), (left, right)).

    'same' follows torch: stride must be 1, and with an even kernel the extra row/column of
    zeros goes at the bottom/right.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' requires stride 1 (as in torch), got stride {stride}")
            sides = []
            for k, d in zip(kernel_size, dilation):
                total = d * (k - 1)
                sides.append((total // 2, total - total // 2))
            return sides[0], sides[1]
        raise ValueError(f"padding must be an int, an (h, w) pair, 'same' or 'valid', got {padding!r}")
    ph, pw = pair(padding, name="padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return (ph, ph), (pw, pw)


def check_positive(value: tuple[int, int], *, name: str) -> tuple[int, int]:
    """Raise ValueError unless both entries of an (h, w) pair are >= 1."""
    if value[0] < 1 or value[1] < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def output_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int = 1, *, ceil_mode: bool = False) -> int:
    """Spatial output length of a strided, dilated window sweep, torch's rule (pooling_output_shape).

    Floor mode counts the windows that fit the padded input; `ceil_mode` (pooling) also counts a
    last partial window, provided that it starts inside the input or the left padding
    (pad_total // 2: pooling pads both sides alike).
    """
    span = size + pad_total - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = (span + stride - 1) // stride + 1
    return out - 1 if (out - 1) * stride >= size + pad_total // 2 else out


def pad_spatial(x: np.ndarray, padding: SidePadding, *, fill: float = 0.0) -> np.ndarray:
    """Pad the last two axes of (N, C, H, W) `x` with `fill`; returns `x` itself when no padding."""
    (top, bottom), (left, right) = padding
    if top == bottom == left == right == 0:
        return x
    n, c, h, w = x.shape
    padded = np.full((n, c, h + top + bottom, w + left + right), fill, dtype=x.dtype)
    padded[:, :, top : top + h, left : left + w] = x
    return padded


def padded_hw(hw: tuple[int, ...], padding: SidePadding) -> tuple[int, int]:
    """(H, W) after padding an (H, W) image with ((top, bottom), (left, right))."""
    (top, bottom), (left, right) = padding
    return hw[0] + top + bottom, hw[1] + left + right


def unpad_spatial(padded: np.ndarray, padding: SidePadding, hw: tuple[int, int]) -> np.ndarray:
    """View of the (H, W) interior of a padded (..., H_p, W_p) array: undoes pad_spatial."""
    (top, _), (left, _) = padding
    return padded[..., top : top + hw[0], left : left + hw[1]]


def window_view(
    padded: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    """Copy-free (N, C, kH, kW, H_out, W_out) view of the windows of a padded (N, C, H, W) array.

    Entry [n, c, i, j, oh, ow] is padded[n, c, oh*sh + i*dh, ow*sw + j*dw]: the im2col columns
    before any copy, with the output positions innermost so the copy into GEMM layout streams.
    """
    sn, sc, sh_, sw_ = padded.strides
    shape = (padded.shape[0], padded.shape[1], kernel_size[0], kernel_size[1], out_hw[0], out_hw[1])
    strides = (sn, sc, sh_ * dilation[0], sw_ * dilation[1], sh_ * stride[0], sw_ * stride[1])
    return np.lib.stride_tricks.as_strided(padded, shape=shape, strides=strides, writeable=False)


def check_nchw(x: np.ndarray, *, name: str = "x") -> None:
    """Raise ValueError unless `x` is a 4-D floating (N, C, H, W) array."""
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"{name} must be a 4-D (N, C, H, W) numpy array, got shape {getattr(x, 'shape', None)}")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")


@dataclass(frozen=True)
class ConvGeometry:
    """Everything shape-related about one conv call, resolved and validated once."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: SidePadding
    groups: int
    out_hw: tuple[int, int]

    def offset_slices(self, i: int, j: int) -> tuple[slice, slice]:
        """Rows/cols of the padded input that kernel offset (i, j) touches, one per output position."""
        (sh, sw), (dh, dw), (ho, wo) = self.stride, self.dilation, self.out_hw
        return slice(i * dh, i * dh + sh * (ho - 1) + 1, sh), slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)


def check_groups(groups: int) -> int:
    """`groups` as a positive int (a bool is not one), else a ValueError naming it."""
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    return int(groups)


def conv_settings(
    kernel: tuple[int, int], stride: IntPair, padding: Padding, dilation: IntPair
) -> tuple[tuple[int, int], tuple[int, int], tuple[tuple[int, int], tuple[int, int]]]:
    """(stride, dilation, padding sides) of a conv with `kernel`, each checked and naming itself."""
    stride_hw = check_positive(pair(stride, name="stride"), name="stride")
    dilation_hw = check_positive(pair(dilation, name="dilation"), name="dilation")
    return stride_hw, dilation_hw, resolve_padding(padding, kernel, stride_hw, dilation_hw)


def conv_geometry(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    stride: IntPair,
    padding: Padding,
    dilation: IntPair,
    groups: int,
) -> ConvGeometry:
    """Validate the shapes of a conv call and resolve its stride/padding/dilation/output size."""
    if len(w_shape) != 4:
        raise ValueError(f"w must be 4-D (C_out, C_in/groups, kH, kW), got shape {w_shape}")
    groups = check_groups(groups)
    _, c_in, h, w = x_shape
    c_out, c_per_group, kh, kw = w_shape
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide C_in={c_in} and C_out={c_out}")
    if c_per_group * groups != c_in:
        raise ValueError(f"w has {c_per_group} input channels per group; x has C_in={c_in}, groups={groups}")
    kernel = check_positive((kh, kw), name="kernel size")
    stride_hw, dilation_hw, sides = conv_settings(kernel, stride, padding, dilation)
    out_hw = (
        output_size(h, kh, stride_hw[0], sum(sides[0]), dilation_hw[0]),
        output_size(w, kw, stride_hw[1], sum(sides[1]), dilation_hw[1]),
    )
    if out_hw[0] < 1 or out_hw[1] < 1:
        raise ValueError(
            f"x of spatial size {(h, w)} is too small for kernel {kernel} with dilation {dilation_hw} "
            f"and padding {sides}"
        )
    return ConvGeometry(kernel, stride_hw, dilation_hw, sides, int(groups), out_hw)
