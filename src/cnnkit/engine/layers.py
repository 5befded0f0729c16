"""Layers with parameters or state on top of the functional core: Conv2d, Linear, BatchNorm, Dropout.

Parameter and buffer names equal torch's (`weight`, `bias`, `running_mean`, `running_var`,
`num_batches_tracked`), and initialisation follows torch's defaults, so a state dict carries
over to the equivalent torch layer unchanged. Gradients accumulate into `Parameter.grad`.
"""

from __future__ import annotations

import numpy as np

from cnnkit.engine import conv, dropout, linear, norm
from cnnkit.engine._utils import IntPair, Padding, check_groups, check_positive, conv_settings, pair
from cnnkit.engine.init import default_bias, default_weight
from cnnkit.engine.module import Module, Parameter, check_float_dtype


def check_input(layer: Module, x: np.ndarray, ndims: tuple[int, ...], dtype: np.dtype) -> None:
    """Raise ValueError naming the layer if x has the wrong number of dimensions or dtype."""
    if x.ndim not in ndims:
        raise ValueError(f"{type(layer).__name__} expects an input of {' or '.join(map(str, ndims))} dims, got shape {x.shape}")
    if x.dtype != dtype:
        raise ValueError(f"{type(layer).__name__} holds {dtype} parameters but got a {x.dtype} input")


class Conv2d(Module):
    """2-D cross-correlation (N, C_in, H, W) -> (N, C_out, H_out, W_out), weight (C_out, C_in/groups, kH, kW)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: Padding = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        *,
        bias: bool = True,
        rng: np.random.Generator,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        super().__init__()
        check_groups(groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels {in_channels} and out_channels {out_channels} must be divisible by groups {groups}")
        self.dtype = check_float_dtype(dtype)
        kernel_h, kernel_w = check_positive(pair(kernel_size, name="kernel_size"), name="kernel_size")
        # Stride, dilation and padding are checked here, naming the argument, not at the first forward.
        conv_settings((kernel_h, kernel_w), stride, padding, dilation)
        shape = (out_channels, in_channels // groups, kernel_h, kernel_w)
        self.weight = Parameter(default_weight(shape, rng=rng, dtype=self.dtype))
        self.bias = Parameter(default_bias(shape, rng=rng, dtype=self.dtype)) if bias else None
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def _geometry(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.groups}

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, (4,), self.dtype)
        self.save_for_backward(x)
        bias = self.bias.value if self.bias is not None else None
        return conv.conv2d(x, self.weight.value, bias, **self._geometry())

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dx, dw, db = conv.conv2d_backward(dy, *self.saved(), self.weight.value, **self._geometry())
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx


class Linear(Module):
    """Affine map (N, in_features) -> (N, out_features), weight (out, in) like torch."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        rng: np.random.Generator,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        super().__init__()
        self.dtype = check_float_dtype(dtype)
        shape = (out_features, in_features)
        self.weight = Parameter(default_weight(shape, rng=rng, dtype=self.dtype))
        self.bias = Parameter(default_bias(shape, rng=rng, dtype=self.dtype)) if bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, (2,), self.dtype)
        self.save_for_backward(x)
        return linear.linear(x, self.weight.value, self.bias.value if self.bias is not None else None)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dx, dw, db = linear.linear_backward(dy, *self.saved(), self.weight.value)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx


class _BatchNorm(Module):
    """Batch normalisation (Ioffe & Szegedy 2015): batch statistics in training, running ones in eval."""

    input_ndims: tuple[int, ...] = ()

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *, dtype: np.dtype | type = np.float32
    ) -> None:
        super().__init__()
        self.dtype = check_float_dtype(dtype)
        self.eps, self.momentum = eps, momentum
        self.weight = Parameter(np.ones(num_features, dtype=self.dtype))
        self.bias = Parameter(np.zeros(num_features, dtype=self.dtype))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=self.dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=self.dtype))
        self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, self.input_ndims, self.dtype)
        y, cache = norm.batch_norm(
            x,
            self.weight.value,
            self.bias.value,
            self.running_mean,
            self.running_var,
            training=self.training,
            momentum=self.momentum,
            eps=self.eps,
        )
        self.save_for_backward(cache)
        if self.training:
            self.num_batches_tracked += 1
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dx, dgamma, dbeta = norm.batch_norm_backward(dy, *self.saved())
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        return dx


class BatchNorm2d(_BatchNorm):
    """Per-channel batch norm of (N, C, H, W) feature maps."""

    input_ndims = (4,)


class BatchNorm1d(_BatchNorm):
    """Per-feature batch norm of (N, C) vectors."""

    input_ndims = (2,)


class Dropout(Module):
    """Inverted dropout (Srivastava et al. 2014): zero a fraction p in training, identity in eval."""

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1), got {p}")
        self.p, self.rng = p, rng

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, mask = dropout.dropout(x, self.p, training=self.training, rng=self.rng)
        self.save_for_backward(mask)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dropout.dropout_backward(dy, *self.saved())


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save_for_backward(x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        (shape,) = self.saved()
        return dy.reshape(shape)
