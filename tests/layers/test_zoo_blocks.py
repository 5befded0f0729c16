"""Blocks of the newer zoo rows (Fire, ShuffleNet V2 unit, RegNet block, Fused-MBConv, Xception block,
pre-activation bottleneck) against plain torch.nn.functional compositions and known answers."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cnnkit.layers.fire import Fire
from cnnkit.layers.inverted_residual import FusedMBConv
from cnnkit.layers.preact import PreActBottleneck
from cnnkit.layers.regnet_block import ResBottleneckBlock
from cnnkit.layers.shuffle_block import ShuffleUnit, channel_shuffle
from cnnkit.layers.xception_block import XceptionBlock


def randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial parameters and BatchNorm statistics, in eval mode, so wrong wiring shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.5)
    return module.eval()


def bn(x: torch.Tensor, norm: nn.BatchNorm2d) -> torch.Tensor:
    return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)


def sample(channels: int, size: int = 8) -> torch.Tensor:
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(1))


def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]


def test_stride_one_shuffle_unit_passes_half_the_channels_through():
    unit = randomised(ShuffleUnit(8, 8, 1))
    x = sample(8)
    with torch.no_grad():
        out = unit(x)
    torch.testing.assert_close(out[:, 0::2], x[:, :4])  # after the shuffle, the kept half sits at even indices
    assert ShuffleUnit(8, 16, 2)(x).shape == (2, 16, 4, 4)


def test_fire_concatenates_its_two_expands():
    fire = randomised(Fire(6, 3, 4, 5))
    x = sample(6)
    squeezed = F.relu(fire.squeeze(x))
    expected = torch.cat([F.relu(fire.expand1x1(squeezed)), F.relu(fire.expand3x3(squeezed))], 1)
    with torch.no_grad():
        torch.testing.assert_close(fire(x), expected)


def test_regnet_block_adds_a_projected_shortcut_then_relu():
    block = randomised(ResBottleneckBlock(8, 16, 2, group_width=8, se_ratio=0.25))
    x = sample(8)
    with torch.no_grad():
        expected = F.relu(block.proj(x) + block.f(x))
        torch.testing.assert_close(block(x), expected)
    assert block.f.b[0].groups == 2 and block.f.se.fc1.out_channels == 2  # 16 / 8 groups; 0.25 * 8 input width


def test_fused_mbconv_is_one_full_conv_then_a_projection():
    block = randomised(FusedMBConv(8, 32, 8, 3, 1, nn.SiLU, nn.BatchNorm2d, stochastic_depth_prob=0.5))
    x = sample(8)
    expand, project = block.block[0], block.block[1]
    hidden = F.silu(bn(F.conv2d(x, expand[0].weight, padding=1), expand[1]))
    expected = bn(F.conv2d(hidden, project[0].weight), project[1]) + x  # eval: stochastic depth keeps all
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)
    assert expand[0].groups == 1 and len(FusedMBConv(8, 8, 16, 3, 2, nn.SiLU, nn.BatchNorm2d).block) == 1


def test_xception_block_keeps_its_input_and_adds_the_skip():
    block = randomised(XceptionBlock(8, 8, 3))
    x = sample(8) - 0.5
    before = x.clone()
    with torch.no_grad():
        out = block(x)
    assert torch.equal(x, before), "the leading ReLU must not overwrite the skip path's input"
    with torch.no_grad():
        torch.testing.assert_close(out, block.rep(x) + x)
    strided = XceptionBlock(8, 16, 2, 2, start_with_relu=False)
    assert not isinstance(strided.rep[0], nn.ReLU) and isinstance(strided.rep[-1], nn.MaxPool2d)


def test_preact_bottleneck_matches_the_functional_form():
    block = randomised(PreActBottleneck(8, 16, 2))
    x = sample(8)
    pre = F.relu(bn(x, block.norm1))
    out = F.conv2d(pre, block.conv1.weight)
    out = F.conv2d(F.relu(bn(out, block.norm2)), block.conv2.weight, stride=2, padding=1)
    out = F.conv2d(F.relu(bn(out, block.norm3)), block.conv3.weight)
    expected = out + F.conv2d(pre, block.downsample.conv.weight, stride=2)
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)
