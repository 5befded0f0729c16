"""Classic CNN blocks: residual, bottleneck, pre-activation, Inception, dense, and the GroupNorm option.

Oracles: torch.nn.functional re-computations of each block's definition with the block's own
weights, and the channel arithmetic of the papers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.layers.bottleneck import Bottleneck, bottleneck_width
from cnnkit.layers.dense import DenseBlock, DenseLayer, Transition
from cnnkit.layers.inception import Inception, InceptionWidths
from cnnkit.layers.norm import make_norm_layer
from cnnkit.layers.preact import PreActBasicBlock
from cnnkit.layers.residual import BasicBlock, projection_shortcut


def _randomise_norms(module: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN statistics and affine parameters, so eval-mode checks exercise them."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator))
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=generator))
            m.bias.data.copy_(torch.randn(m.num_features, generator=generator))


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


@torch.no_grad()
def test_basic_block_matches_its_definition_with_projection() -> None:
    g = torch.Generator().manual_seed(0)
    block = BasicBlock(8, 16, stride=2, downsample=projection_shortcut(8, 16, 2, nn.BatchNorm2d)).eval()
    _randomise_norms(block, g)
    x = torch.randn(2, 8, 10, 10, generator=g)
    out = F.relu(_bn(F.conv2d(x, block.conv1.weight, stride=2, padding=1), block.bn1))
    out = _bn(F.conv2d(out, block.conv2.weight, padding=1), block.bn2)
    shortcut = _bn(F.conv2d(x, block.downsample[0].weight, stride=2), block.downsample[1])
    torch.testing.assert_close(block(x), F.relu(out + shortcut))
    assert block(x).shape == (2, 16, 5, 5)


def test_bottleneck_groups_and_width_follow_resnext_and_wide_resnet() -> None:
    assert bottleneck_width(64, groups=32, width_per_group=4) == 128  # ResNeXt-50 32x4d, stage 1
    assert bottleneck_width(64, groups=1, width_per_group=128) == 128  # Wide ResNet-50-2, stage 1
    block = Bottleneck(256, 64, groups=32, width_per_group=4)
    assert block.conv2.weight.shape == (128, 128 // 32, 3, 3)
    assert block(torch.randn(2, 256, 8, 8)).shape == (2, 256, 8, 8)


def test_bottleneck_stride_and_projection_shape() -> None:
    block = Bottleneck(64, 32, stride=2, downsample=projection_shortcut(64, 128, 2, nn.BatchNorm2d))
    assert block(torch.randn(2, 64, 8, 8)).shape == (2, 128, 4, 4)


@pytest.mark.parametrize("block", [BasicBlock(16, 16), Bottleneck(64, 16)], ids=["basic", "bottleneck"])
def test_zero_init_last_norm_makes_the_block_relu_of_identity(block: nn.Module) -> None:
    block.zero_init_last()
    block.eval()
    x = torch.randn(2, block.conv1.in_channels, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(x))


@pytest.mark.parametrize(
    "block",
    [
        BasicBlock(8, 16, 2, projection_shortcut(8, 16, 2, nn.BatchNorm2d)),
        Bottleneck(8, 4, 2, projection_shortcut(8, 16, 2, nn.BatchNorm2d), groups=2, width_per_group=32),
        PreActBasicBlock(8, 16, 2),
    ],
    ids=["basic", "bottleneck", "preact"],
)
def test_gradients_reach_every_parameter(block: nn.Module) -> None:
    x = torch.randn(2, 8, 8, 8, requires_grad=True)
    block(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@torch.no_grad()
def test_avg_down_shortcut_pools_before_the_1x1_conv() -> None:
    g = torch.Generator().manual_seed(1)
    shortcut = projection_shortcut(4, 8, 2, nn.BatchNorm2d, avg_down=True).eval()
    _randomise_norms(shortcut, g)
    x = torch.randn(2, 4, 7, 7, generator=g)
    pooled = F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)
    torch.testing.assert_close(shortcut(x), _bn(F.conv2d(pooled, shortcut[1].weight), shortcut[2]))


@torch.no_grad()
def test_preactivation_order_is_bn_relu_conv_with_a_clean_identity_path() -> None:
    g = torch.Generator().manual_seed(2)
    block = PreActBasicBlock(6, 6).eval()
    _randomise_norms(block, g)
    x = torch.randn(2, 6, 5, 5, generator=g)
    pre = F.relu(_bn(x, block.bn1))
    out = F.conv2d(F.relu(_bn(F.conv2d(pre, block.conv1.weight, padding=1), block.bn2)), block.conv2.weight, padding=1)
    torch.testing.assert_close(block(x), out + x)
    assert (block(x) < 0).any(), "no ReLU after the addition (He et al. 2016, Identity Mappings)"


@torch.no_grad()
def test_preactivation_projection_reads_the_preactivated_input() -> None:
    g = torch.Generator().manual_seed(3)
    block = PreActBasicBlock(4, 8, stride=2).eval()
    _randomise_norms(block, g)
    x = torch.randn(1, 4, 6, 6, generator=g)
    block.conv2.weight.zero_()
    expected = F.conv2d(F.relu(_bn(x, block.bn1)), block.downsample.weight, stride=2)
    torch.testing.assert_close(block(x), expected)


def test_inception_concatenates_its_four_branches() -> None:
    widths = InceptionWidths(ch1x1=8, ch3x3red=4, ch3x3=12, ch5x5red=2, ch5x5=6, pool_proj=5)
    module = Inception(10, widths).eval()
    x = torch.randn(2, 10, 9, 9)
    out = module(x)
    assert out.shape == (2, 8 + 12 + 6 + 5, 9, 9) and module.out_channels == 31
    assert module.branch3[1].conv.kernel_size == (5, 5)
    with torch.no_grad():
        torch.testing.assert_close(out[:, :8], module.branch1(x))
        torch.testing.assert_close(out[:, 26:], module.branch4(x))


def test_dense_block_concatenates_input_and_each_layers_growth() -> None:
    block = DenseBlock(num_layers=3, in_channels=16, growth_rate=8, bn_size=4).eval()
    x = torch.randn(2, 16, 6, 6)
    out = block(x)
    assert out.shape == (2, 16 + 3 * 8, 6, 6) == (2, block.out_channels, 6, 6)
    torch.testing.assert_close(out[:, :16], x)
    layer2 = block["denselayer2"]
    assert layer2.conv1.weight.shape == (4 * 8, 16 + 8, 1, 1) and layer2.conv2.weight.shape == (8, 32, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(out[:, 16:24], block["denselayer1"](x))
        torch.testing.assert_close(out[:, 24:32], layer2(out[:, :24]))


@torch.no_grad()
def test_dense_layer_and_transition_orders() -> None:
    g = torch.Generator().manual_seed(4)
    layer = DenseLayer(6, growth_rate=4, bn_size=2).eval()
    _randomise_norms(layer, g)
    x = torch.randn(2, 6, 5, 5, generator=g)
    hidden = F.conv2d(F.relu(_bn(x, layer.norm1)), layer.conv1.weight)
    expected = F.conv2d(F.relu(_bn(hidden, layer.norm2)), layer.conv2.weight, padding=1)
    torch.testing.assert_close(layer(x), expected)
    transition = Transition(6, 3).eval()
    _randomise_norms(transition, g)
    expected = F.avg_pool2d(F.conv2d(F.relu(_bn(x, transition.norm)), transition.conv.weight), 2)
    torch.testing.assert_close(transition(x), expected)
    assert transition(x).shape == (2, 3, 2, 2)


def test_group_norm_option_replaces_batch_norm_and_matches_torch() -> None:
    norm = make_norm_layer("group", num_groups=4)
    block = Bottleneck(32, 8, norm_layer=norm)
    kinds = {type(m) for m in block.modules()}
    assert nn.GroupNorm in kinds and nn.BatchNorm2d not in kinds
    assert block.bn2.num_groups == 4
    x = torch.randn(1, 32, 1, 1)  # one sample, one pixel: BatchNorm could not train on this
    block.train()(x).sum().backward()
    torch.testing.assert_close(block.bn1(x[:, :8]), F.group_norm(x[:, :8], 4, block.bn1.weight, block.bn1.bias))
    assert isinstance(make_norm_layer("batch")(8), nn.BatchNorm2d)


def test_norm_factory_rejects_bad_requests() -> None:
    with pytest.raises(ValueError, match="not divisible by num_groups=32"):
        make_norm_layer("group")(48)
    with pytest.raises(ValueError, match="norm kind"):
        make_norm_layer("layer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="groups=1"):
        BasicBlock(8, 8, groups=2)
