"""Blocks of the efficient CNNs, checked against plain torch.nn.functional compositions and known answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cnnkit.layers.convnext_block import ConvNeXtBlock
from cnnkit.layers.depthwise_separable import DepthwiseSeparableConv
from cnnkit.layers.inverted_residual import InvertedResidual, MBConv
from cnnkit.layers.layer_norm import LayerNorm2d
from cnnkit.layers.make_divisible import make_divisible
from cnnkit.layers.squeeze_excitation import SqueezeExcitation
from cnnkit.layers.stochastic_depth import StochasticDepth, stochastic_depth


def _randomise_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial parameters and BatchNorm statistics, so a wrong wiring changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.5)
    return module.eval()


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (24.0, {}, 24),  # already a multiple
        (35.2, {}, 32),  # 32 * 1.1: nearest multiple, within 10%
        (17.6, {}, 16),  # 16 * 1.1: 16 >= 0.9 * 17.6
        (10.0, {}, 16),  # nearest is 8, a 20% loss: one divisor is added back
        (10.0, {"round_limit": 0.0}, 8),  # timm's SE rounding keeps the loss
        (3.0, {}, 8),  # never below the divisor
        (3.0, {"divisor": 1, "min_value": 1}, 3),
    ],
)
def test_make_divisible_known_answers(value: float, kwargs: dict, expected: int) -> None:
    assert make_divisible(value, **kwargs) == expected


def test_squeeze_excitation_matches_functional_formula() -> None:
    se = _randomise_(SqueezeExcitation(16, 4))
    x = torch.randn(2, 16, 5, 7, generator=torch.Generator().manual_seed(1))
    squeezed = x.mean(dim=(2, 3), keepdim=True)
    gate = torch.sigmoid(F.conv2d(F.relu(F.conv2d(squeezed, se.fc1.weight, se.fc1.bias)), se.fc2.weight, se.fc2.bias))
    torch.testing.assert_close(se(x), gate * x)
    assert [name for name, _ in se.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def test_squeeze_excitation_gate_is_a_per_channel_weight_in_unit_interval() -> None:
    se = SqueezeExcitation(8, 2).eval()
    x = torch.randn(3, 8, 4, 4, generator=torch.Generator().manual_seed(2)) * 10
    gate = se.channel_gate(x)
    assert gate.shape == (3, 8, 1, 1)
    assert torch.all((gate > 0) & (gate < 1))
    hard = SqueezeExcitation(8, 2, scale_activation=nn.Hardsigmoid).eval().channel_gate(x)
    assert torch.all((hard >= 0) & (hard <= 1))


def test_depthwise_separable_matches_depthwise_then_pointwise() -> None:
    block = _randomise_(DepthwiseSeparableConv(6, 10, stride=2))
    x = torch.randn(2, 6, 9, 9, generator=torch.Generator().manual_seed(3))
    depthwise = F.relu6(block.bn1(F.conv2d(x, block.conv_dw.weight, stride=2, padding=1, groups=6)))
    expected = F.relu6(block.bn2(F.conv2d(depthwise, block.conv_pw.weight)))
    torch.testing.assert_close(block(x), expected)
    assert block(x).shape == (2, 10, 5, 5)
    assert block.conv_dw.weight.shape == (6, 1, 3, 3)
    assert block.conv_pw.weight.shape == (10, 6, 1, 1)


def _zero_last_norm_(block: nn.Module) -> nn.Module:
    """Make the residual branch output exactly zero: the projection's BatchNorm scale and shift = 0."""
    norm = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)][-1]
    with torch.no_grad():
        norm.weight.zero_()
        norm.bias.zero_()
    return block.eval()


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "stride", "residual"),
    [(16, 16, 1, True), (16, 24, 1, False), (16, 16, 2, False)],
)
def test_inverted_residual_adds_input_only_for_stride_1_and_equal_widths(
    in_channels: int, out_channels: int, stride: int, residual: bool
) -> None:
    x = torch.randn(2, in_channels, 8, 8, generator=torch.Generator().manual_seed(4))
    v2 = _zero_last_norm_(InvertedResidual(in_channels, out_channels, stride, expand_ratio=6))
    mb = _zero_last_norm_(MBConv(in_channels, 64, out_channels, 5, stride, nn.SiLU, nn.BatchNorm2d, se_channels=4))
    for block in (v2, mb):
        out = block(x)
        assert out.shape == (2, out_channels, 8 // stride, 8 // stride)
        assert block.use_res_connect is residual
        torch.testing.assert_close(out, x if residual else torch.zeros_like(out))


def test_inverted_residual_layout_follows_expansion_and_se() -> None:
    no_expand = InvertedResidual(16, 16, 1, expand_ratio=1)
    assert [type(m).__name__ for m in no_expand.conv] == ["ConvNormAct", "Conv2d", "BatchNorm2d"]
    expand = InvertedResidual(16, 24, 2, expand_ratio=6)
    assert expand.conv[0][0].weight.shape == (96, 16, 1, 1)
    assert expand.conv[1][0].weight.shape == (96, 1, 3, 3)
    with_se = MBConv(16, 64, 24, 3, 1, nn.Hardswish, nn.BatchNorm2d, se_channels=16)
    layout = [type(m).__name__ for m in with_se.block]
    assert layout == ["ConvNormAct", "ConvNormAct", "SqueezeExcitation", "ConvNormAct"]
    without = MBConv(16, 16, 16, 3, 1, nn.ReLU, nn.BatchNorm2d)
    assert [type(m).__name__ for m in without.block] == ["ConvNormAct", "ConvNormAct"]
    with pytest.raises(ValueError, match="stride"):
        InvertedResidual(16, 16, 3, expand_ratio=6)


def test_mbconv_stochastic_depth_drops_the_branch_in_training_only() -> None:
    block = _randomise_(MBConv(8, 32, 8, 3, 1, nn.SiLU, nn.BatchNorm2d, se_channels=2, stochastic_depth_prob=1.0))
    x = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(5))
    assert not torch.allclose(block(x), x)  # eval: branch kept
    block.train()
    for module in block.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    torch.testing.assert_close(block(x), x)  # train with p=1: branch always dropped


def test_stochastic_depth_is_identity_in_eval() -> None:
    x = torch.randn(64, 3, 2, 2)
    layer = StochasticDepth(0.5).eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(stochastic_depth(x, 0.5, training=False), x)


def test_stochastic_depth_preserves_expectation_and_drops_whole_rows() -> None:
    p, n = 0.3, 20_000
    x = torch.ones(n, 2, 3)
    out = stochastic_depth(x, p, "row", generator=torch.Generator().manual_seed(6))
    per_row = out.reshape(n, -1)
    assert torch.all(per_row == per_row[:, :1])  # each sample is kept or dropped as a whole
    kept = per_row[:, 0] > 0
    torch.testing.assert_close(per_row[kept, 0], torch.full((int(kept.sum()),), 1 / (1 - p)))
    # Binomial(n, 1 - p): 5 standard deviations of the kept fraction.
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * sigma
    assert abs(out.mean().item() - 1.0) < 5 * sigma / (1 - p)


def test_stochastic_depth_batch_mode_and_reproducibility() -> None:
    x = torch.randn(16, 4)
    dropped = []
    for seed in range(20):
        out = stochastic_depth(x, 0.5, "batch", generator=torch.Generator().manual_seed(seed))
        dropped.append(bool(torch.all(out == 0)))
        if not dropped[-1]:
            torch.testing.assert_close(out, 2 * x)  # the whole batch kept, scaled by 1 / (1 - p)
    assert any(dropped) and not all(dropped)
    layer = StochasticDepth(0.5).train()
    torch.manual_seed(7)
    first = layer(x)
    torch.manual_seed(7)
    assert torch.equal(layer(x), first)
    with pytest.raises(ValueError, match="mode"):
        StochasticDepth(0.1, "column")
    with pytest.raises(ValueError, match="probability"):
        stochastic_depth(x, 1.5)


def test_layer_norm_2d_equals_permuted_layer_norm() -> None:
    ours = _randomise_(LayerNorm2d(12, eps=1e-6))
    reference = nn.LayerNorm(12, eps=1e-6)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, 12, 5, 3, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(ours(x), reference(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_convnext_block_matches_functional_formula() -> None:
    block = _randomise_(ConvNeXtBlock(8, layer_scale=0.5))
    x = torch.randn(2, 8, 9, 9, generator=torch.Generator().manual_seed(9))
    conv, norm, fc1, fc2 = block.block[0], block.block[2], block.block[3], block.block[5]
    y = F.conv2d(x, conv.weight, conv.bias, padding=3, groups=8).permute(0, 2, 3, 1)
    y = F.layer_norm(y, (8,), norm.weight, norm.bias, 1e-6)
    y = F.linear(F.gelu(F.linear(y, fc1.weight, fc1.bias)), fc2.weight, fc2.bias)
    expected = x + block.layer_scale * y.permute(0, 3, 1, 2)
    torch.testing.assert_close(block(x), expected)
    assert block.layer_scale.shape == (8, 1, 1)
    assert fc1.weight.shape == (32, 8)


def test_convnext_block_starts_near_identity() -> None:
    block = ConvNeXtBlock(8).eval()  # layer scale 1e-6 (Touvron et al. 2021)
    x = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(10))
    torch.testing.assert_close(block(x), x, atol=1e-4, rtol=0)


@pytest.mark.parametrize("layer_scale", [1, 0])
def test_convnext_layer_scale_given_as_an_int_is_a_float_parameter(layer_scale: int) -> None:
    """`--model-opt layer_scale=1` reads as an int; torch.full made an int64 tensor and nn.Parameter
    refused it ('Only Tensors of floating point ... can require gradients')."""
    block = ConvNeXtBlock(4, layer_scale=layer_scale)
    assert block.layer_scale.dtype == torch.get_default_dtype()
    assert torch.equal(block.layer_scale, torch.full((4, 1, 1), float(layer_scale)))
