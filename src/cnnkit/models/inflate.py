"""Inflate a 2D CNN to a 3D one for video, as in I3D (Carreira & Zisserman 2017).

Each k x k conv becomes a T x k x k conv whose weights are the 2D ones repeated over time and
divided by T, so a still video (one frame repeated) gives every frame the 2D activations.
That holds exactly at the first and last frames too when time is padded by replicating the end
frames (`time_padding="replicate"`, the default); with zero padding only frames far enough from
the ends to never see the padding keep the property.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.models.base import ClassifierModel

TimeKernel = int | Callable[[str, nn.Conv2d], int]
TimePadding = Literal["replicate", "zeros"]


class TimePaddedConv3d(nn.Conv3d):
    """(N, C, T, H, W) -> (N, C', T, H', W'): a Conv3d with stride 1 over time whose time padding
    (kt - 1) // 2 before and kt // 2 after keeps T, replicating or zero-filling the end frames;
    space is zero-padded as in the 2D conv. State-dict names are those of `nn.Conv3d`.
    """

    def __init__(self, *args: object, time_padding_mode: TimePadding, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.time_padding_mode = time_padding_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kt = self.kernel_size[0]
        pad = (0, 0, 0, 0, (kt - 1) // 2, kt // 2)
        if kt > 1:
            x = F.pad(x, pad, mode="replicate") if self.time_padding_mode == "replicate" else F.pad(x, pad)
        return super().forward(x)


class TimeCollapsingAdaptiveAvgPool3d(nn.AdaptiveAvgPool3d):
    """Adaptive average pool to (1, h, w): (N, C, T, H, W) -> (N, C, 1, h, w), averaging all of time.

    A 4-D (N, C, H, W) input (a map already averaged over time, as `forward_head` of an inflated
    classifier receives) is pooled in space only.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return F.adaptive_avg_pool2d(x, self.output_size[1:])
        return super().forward(x)


class TimeCollapsingAdaptiveMaxPool3d(nn.AdaptiveMaxPool3d):
    """Adaptive max pool to (1, h, w) over (N, C, T, H, W); a 4-D input is pooled in space only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if x.ndim == 4:
            return F.adaptive_max_pool2d(x, self.output_size[1:], self.return_indices)
        return super().forward(x)


def _pair(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _spatial_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if conv.padding_mode != "zeros":
        raise ValueError(f"cannot inflate a conv with padding_mode={conv.padding_mode!r} (only 'zeros')")
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if any(t % 2 for t in total):
            raise ValueError(f"cannot inflate an asymmetric 'same' padding (kernel {conv.kernel_size})")
        return (total[0] // 2, total[1] // 2)
    return conv.padding  # type: ignore[return-value]


def inflate_conv(conv: nn.Conv2d, time_kernel: int, *, time_padding: TimePadding = "replicate") -> TimePaddedConv3d:
    """Conv2d (O, I, kh, kw) -> conv (O, I, time_kernel, kh, kw), weights repeated over time / time_kernel."""
    if time_kernel < 1:
        raise ValueError(f"time_kernel must be >= 1, got {time_kernel}")
    weight = conv.weight
    inflated = TimePaddedConv3d(
        conv.in_channels, conv.out_channels, (time_kernel, *conv.kernel_size),
        stride=(1, *conv.stride), padding=(0, *_spatial_padding(conv)), dilation=(1, *conv.dilation),
        groups=conv.groups, bias=conv.bias is not None, device=weight.device, dtype=weight.dtype,
        time_padding_mode=time_padding,
    )
    with torch.no_grad():
        inflated.weight.copy_(weight.unsqueeze(2).expand_as(inflated.weight) / time_kernel)
        if conv.bias is not None:
            inflated.bias.copy_(conv.bias)
    inflated.train(conv.training)
    return inflated


def _inflate_norm(norm: nn.BatchNorm2d) -> nn.BatchNorm3d:
    reference = next((t for t in (norm.weight, norm.running_mean) if t is not None), None)
    factory = {} if reference is None else {"device": reference.device, "dtype": reference.dtype}
    inflated = nn.BatchNorm3d(
        norm.num_features, norm.eps, norm.momentum, affine=norm.affine,
        track_running_stats=norm.track_running_stats, **factory,
    )
    inflated.load_state_dict(norm.state_dict())
    inflated.train(norm.training)
    return inflated


def _inflate_leaf(module: nn.Module) -> nn.Module | None:
    """The 3D counterpart of a 2D layer, or None when `module` works on any rank (e.g. ReLU)."""
    if isinstance(module, nn.BatchNorm2d):
        return _inflate_norm(module)
    if isinstance(module, nn.MaxPool2d):
        k, s, p, d = (_pair(v) for v in (module.kernel_size, module.stride, module.padding, module.dilation))
        return nn.MaxPool3d(
            (1, *k), (1, *s), (0, *p), (1, *d), return_indices=module.return_indices, ceil_mode=module.ceil_mode
        )
    if isinstance(module, nn.AvgPool2d):
        k, s, p = (_pair(v) for v in (module.kernel_size, module.stride, module.padding))
        return nn.AvgPool3d(
            (1, *k), (1, *s), (0, *p), ceil_mode=module.ceil_mode,
            count_include_pad=module.count_include_pad, divisor_override=module.divisor_override,
        )
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return TimeCollapsingAdaptiveAvgPool3d((1, *_pair(module.output_size)))
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return TimeCollapsingAdaptiveMaxPool3d((1, *_pair(module.output_size)), module.return_indices)
    if isinstance(module, nn.Dropout2d):
        return nn.Dropout3d(module.p, module.inplace)
    if type(module).__name__.endswith("2d"):
        raise ValueError(f"cannot inflate {type(module).__name__}: no 3D counterpart known")
    return None


def _inflated(module: nn.Module, path: str, time_kernel: TimeKernel, time_padding: TimePadding) -> nn.Module | None:
    """The 3D counterpart of one layer at `path`, or None when it needs none of its own (containers, ReLU)."""
    if isinstance(module, nn.Conv2d):
        kt = time_kernel(path, module) if callable(time_kernel) else time_kernel
        return inflate_conv(module, kt, time_padding=time_padding)
    return _inflate_leaf(module)


def _inflate_children(parent: nn.Module, prefix: str, time_kernel: TimeKernel, time_padding: TimePadding) -> None:
    """Replace every 2D layer below `parent` in place, each under its old name."""
    for name, child in parent.named_children():
        replacement = _inflated(child, f"{prefix}{name}", time_kernel, time_padding)
        if replacement is None:
            _inflate_children(child, f"{prefix}{name}.", time_kernel, time_padding)
        else:
            setattr(parent, name, replacement)


def _video_forward(self: ClassifierModel, x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> (N, num_classes): 3D features, averaged over time, then the 2D head."""
    return self.forward_head(self.forward_features(x).mean(dim=2))


def inflate_to_3d(
    model_2d: nn.Module, time_kernel: TimeKernel = 3, *, time_padding: TimePadding = "replicate"
) -> nn.Module:
    """A 3D copy of `model_2d` for (N, C, T, H, W) videos, module names (and state-dict keys) kept.

    Conv2d -> Conv3d (time_kernel x k x k, stride 1 over time, weights repeated / time_kernel);
    `time_kernel` is an int or a function (module path, conv) -> int, e.g. 1 for some layers.
    BatchNorm2d -> BatchNorm3d with the same statistics; pools get kernel 1 over time; adaptive
    pools output time size 1. A `ClassifierModel` keeps its `forward_features` (now 5-D) and
    `forward_head`, and its forward averages the features over time between the two.
    Spatial ops that a model runs functionally in `forward_features` are not converted.
    """
    single_layer = _inflated(model_2d, "", time_kernel, time_padding)
    if single_layer is not None:
        return single_layer
    inflated = copy.deepcopy(model_2d)
    _inflate_children(inflated, "", time_kernel, time_padding)
    if isinstance(inflated, ClassifierModel):
        base = type(inflated)
        # A per-instance subclass (as torch.nn.utils.parametrize does) changes only `forward`.
        namespace = {"forward": _video_forward, "__doc__": _video_forward.__doc__}
        inflated.__class__ = type(f"Inflated{base.__name__}", (base,), namespace)
    return inflated
