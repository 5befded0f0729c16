"""Arithmetic of one 2-D convolution: output size, parameters, MACs, depthwise-separable alternative."""

from __future__ import annotations

from dataclasses import dataclass

from cnnkit.engine import output_size
from cnnkit.errors import CnnkitError


@dataclass(frozen=True)
class ConvSpec:
    """A square 2-D convolution applied to a square `size` x `size` input."""

    size: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    in_channels: int = 1
    out_channels: int = 1


@dataclass(frozen=True)
class ConvReport:
    """What `spec` costs. MACs count one multiply-accumulate per weight per output position."""

    spec: ConvSpec
    output_size: int
    params_no_bias: int
    params_with_bias: int
    macs: int
    separable_params: int
    separable_macs: int

    @property
    def separable_ratio(self) -> float:
        """Depthwise-separable parameters / standard parameters (both without bias)."""
        return self.separable_params / self.params_no_bias


def _validate(spec: ConvSpec) -> None:
    for name in ("size", "kernel", "stride", "dilation", "groups", "in_channels", "out_channels"):
        if getattr(spec, name) < 1:
            raise CnnkitError(f"{name} must be >= 1, got {getattr(spec, name)}")
    if spec.padding < 0:
        raise CnnkitError(f"padding must be >= 0, got {spec.padding}")
    span = spec.dilation * (spec.kernel - 1) + 1
    if span > spec.size + 2 * spec.padding:
        raise CnnkitError(
            f"kernel {spec.kernel} (dilation {spec.dilation}, span {span}) is larger than the padded "
            f"input {spec.size} + 2*{spec.padding} = {spec.size + 2 * spec.padding}"
        )
    for name in ("in_channels", "out_channels"):
        if getattr(spec, name) % spec.groups:
            raise CnnkitError(f"{name} ({getattr(spec, name)}) is not divisible by groups ({spec.groups})")


def conv_report(spec: ConvSpec) -> ConvReport:
    """Output size (in + 2p - d(k-1) - 1) // s + 1, parameters and MACs of `spec`.

    The separable alternative (MobileNet, Howard et al. 2017) is a depthwise k x k conv
    (in_channels weights per tap) followed by a 1x1 pointwise conv, both without bias.
    """
    _validate(spec)
    out = output_size(spec.size, spec.kernel, spec.stride, 2 * spec.padding, spec.dilation)
    weights = spec.out_channels * (spec.in_channels // spec.groups) * spec.kernel**2
    depthwise = spec.in_channels * spec.kernel**2
    pointwise = spec.in_channels * spec.out_channels
    return ConvReport(
        spec=spec,
        output_size=out,
        params_no_bias=weights,
        params_with_bias=weights + spec.out_channels,
        macs=weights * out * out,
        separable_params=depthwise + pointwise,
        separable_macs=(depthwise + pointwise) * out * out,
    )


def format_conv_report(report: ConvReport) -> str:
    """Readable lines for the `cnnkit conv` command."""
    s = report.spec
    return "\n".join(
        [
            f"input {s.size}x{s.size}x{s.in_channels}, kernel {s.kernel}, stride {s.stride}, "
            f"padding {s.padding}, dilation {s.dilation}, groups {s.groups}, out channels {s.out_channels}",
            f"output size: {report.output_size}x{report.output_size}  "
            f"(({s.size} + 2*{s.padding} - {s.dilation}*({s.kernel}-1) - 1) // {s.stride} + 1)",
            f"parameters: {report.params_with_bias:,} with bias, {report.params_no_bias:,} without",
            f"MACs: {report.macs:,}",
            f"depthwise-separable alternative: {report.separable_params:,} parameters, "
            f"{report.separable_macs:,} MACs (ratio {report.separable_ratio:.3f} of the standard conv)",
        ]
    )
