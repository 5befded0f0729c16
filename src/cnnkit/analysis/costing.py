"""Multiply-accumulates of every aten op, with FlopCounterMode's convention, and what it cannot cost.

Convention (as `torch.utils.flop_counter.FlopCounterMode`, whose formulas are reused): only
convolution, matmul-family (mm, addmm, bmm, baddbmm, hence linear) and attention ops cost MACs
(= FLOPs / 2). Elementwise ops, views, normalisation, pooling, reductions and data movement
cost zero by convention; any other op (e.g. an FFT) is reported as uncosted, never silently zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

aten = torch.ops.aten

# Metadata queries FlopCounterMode also passes through: they compute nothing.
_METADATA_OPS = {
    aten.sym_is_contiguous.default,
    aten.is_contiguous.default,
    aten.is_contiguous.memory_format,
    aten.is_strides_like_format.default,
    aten.is_non_overlapping_and_dense.default,
    aten.size.default,
    aten.sym_size.default,
    aten.stride.default,
    aten.sym_stride.default,
    aten.storage_offset.default,
    aten.sym_storage_offset.default,
    aten.numel.default,
    aten.sym_numel.default,
    aten.dim.default,
    torch.ops.prim.layout.default,
    torch.ops.prim.device.default,
}

# Non-pointwise ops that cost zero MACs by convention: normalisation, pooling, reductions,
# softmax, dropout, padding, allocation and data movement.
FREE_OPS = frozenset(
    {
        "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
        "_native_batch_norm_legit_functional", "native_layer_norm", "native_group_norm",
        "batch_norm", "_batch_norm_impl_index", "layer_norm", "group_norm", "instance_norm",
        "max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "_adaptive_avg_pool2d",
        "adaptive_max_pool2d", "mean", "sum", "amax", "amin", "max", "min", "var", "var_mean",
        "std", "std_mean", "prod", "_softmax", "_log_softmax", "native_dropout", "constant_pad_nd",
        "cat", "stack", "clone", "_to_copy", "copy_", "copy", "empty", "empty_like", "empty_strided",
        "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "fill_", "fill", "zero_",
        "new_empty", "new_empty_strided", "new_zeros", "new_ones", "new_full", "_unsafe_view",
        "split", "split_with_sizes", "unbind", "index", "index_select", "gather", "flip", "roll",
        "repeat", "detach", "lift_fresh", "arange", "linspace", "bernoulli", "bernoulli_",
        "rand", "randn", "uniform_", "normal_", "argmax", "argmin", "_local_scalar_dense",
        # 3-D pooling (inflated video models) and the non-constant paddings, in every rank;
        # nearest upsampling (_unsafe_index) and pixel (un)shuffles only move data.
        "max_pool3d", "max_pool3d_with_indices", "avg_pool3d", "_adaptive_avg_pool3d", "adaptive_max_pool3d",
        "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
        "replication_pad1d", "replication_pad2d", "replication_pad3d",
        "_unsafe_index", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle",
    }
)

# Elementwise activations aten does not tag as pointwise.
ACTIVATIONS = frozenset(
    {"hardswish", "hardsigmoid", "hardtanh", "relu6", "silu", "gelu", "elu", "selu", "celu",
     "leaky_relu", "mish", "softplus", "threshold", "glu", "prelu", "_prelu_kernel", "log_sigmoid_forward"}
)


def op_name(func: Any) -> str:
    """The op's readable name, e.g. 'aten._fft_r2c'."""
    return str(func._overloadpacket) if hasattr(func, "_overloadpacket") else str(func)


def is_free(func: Any) -> bool:
    """True if `func` costs zero MACs by convention (pointwise, view, or in FREE_OPS)."""
    if torch.Tag.pointwise in func.tags or func.is_view:
        return True
    name = func._overloadpacket.__name__
    # An in-place variant (relu_, as_strided_) costs what its out-of-place op (relu, a view) costs.
    base = name[:-1] if name.endswith("_") and not name.endswith("__") else name
    functional = getattr(getattr(aten, base, None), "default", None)
    if functional is not None and (torch.Tag.pointwise in functional.tags or functional.is_view):
        return True
    return base in FREE_OPS or base in ACTIVATIONS


class MacCounterMode(TorchDispatchMode):
    """Counts MACs of each op and calls `on_op(macs, uncosted_op_name_or_None)` for it."""

    def __init__(self, on_op: Callable[[int, str | None], None]) -> None:
        super().__init__()
        self.on_op = on_op

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _METADATA_OPS:
            return func(*args, **kwargs)
        packet = func._overloadpacket
        if packet not in flop_registry and not is_free(func):
            # As FlopCounterMode: a composite op is costed through its parts (free ops contain
            # no matmul, and skipping their Python decomposition keeps meta runs fast).
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        if packet in flop_registry:
            self.on_op(flop_registry[packet](*args, **kwargs, out_val=out) // 2, None)
        elif not is_free(func):
            self.on_op(0, op_name(func))
        return out
