"""Conv calculator: hand-computed answers, PyTorch's own shapes/params/MACs, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnkit.analysis.conv_calculator import ConvSpec, conv_report
from cnnkit.errors import CnnkitError


def test_resnet_stem_224_k7_s2_p3_gives_112() -> None:
    assert conv_report(ConvSpec(size=224, kernel=7, stride=2, padding=3)).output_size == 112


def test_small_case_computed_by_hand() -> None:
    report = conv_report(ConvSpec(size=5, kernel=3, in_channels=2, out_channels=4))
    assert report.output_size == 3  # (5 - 2 - 1) // 1 + 1
    assert report.params_no_bias == 72  # 4 filters x 2 channels x 3 x 3
    assert report.params_with_bias == 76  # + 4 biases
    assert report.macs == 648  # 72 weights x 3 x 3 output positions
    assert report.separable_params == 26  # depthwise 2 x 9 + pointwise 2 x 4
    assert report.separable_macs == 26 * 9
    assert report.separable_ratio == pytest.approx(26 / 72)


def test_dilation_and_groups_by_hand() -> None:
    report = conv_report(ConvSpec(size=7, kernel=3, dilation=2, groups=2, in_channels=4, out_channels=6))
    assert report.output_size == 3  # (7 - 2 * 2 - 1) // 1 + 1
    assert report.params_no_bias == 6 * 2 * 9  # each filter sees in_channels / groups = 2 channels


@pytest.mark.parametrize(
    "spec",
    [
        ConvSpec(size=17, kernel=3, stride=2, padding=1, in_channels=3, out_channels=8),
        ConvSpec(size=20, kernel=5, stride=3, padding=0, dilation=2, groups=4, in_channels=8, out_channels=12),
        ConvSpec(size=9, kernel=1, in_channels=6, out_channels=6, groups=6),
    ],
)
def test_matches_pytorch(spec: ConvSpec) -> None:
    conv = nn.Conv2d(
        spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.padding, spec.dilation, spec.groups
    )
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = conv(torch.zeros(1, spec.in_channels, spec.size, spec.size))
    report = conv_report(spec)
    assert out.shape[-2:] == (report.output_size, report.output_size)
    assert sum(p.numel() for p in conv.parameters()) == report.params_with_bias
    assert counter.get_total_flops() // 2 == report.macs


def test_kernel_larger_than_padded_input_is_an_error() -> None:
    with pytest.raises(CnnkitError, match="kernel 7 .* larger than the padded input 4"):
        conv_report(ConvSpec(size=4, kernel=7, padding=1))


def test_channels_not_divisible_by_groups_is_an_error() -> None:
    with pytest.raises(CnnkitError, match=r"in_channels \(3\) is not divisible by groups \(2\)"):
        conv_report(ConvSpec(size=8, kernel=3, groups=2, in_channels=3, out_channels=4))


@pytest.mark.parametrize("field", ["size", "kernel", "stride", "dilation", "groups", "in_channels", "out_channels"])
def test_non_positive_values_name_the_argument(field: str) -> None:
    values = {"size": 8, "kernel": 3, field: 0}
    with pytest.raises(CnnkitError, match=f"{field} must be >= 1"):
        conv_report(ConvSpec(**values))
