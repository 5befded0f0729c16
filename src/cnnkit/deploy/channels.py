"""Structured pruning that really shrinks the model: remove whole conv filters by L1 norm.

Li et al. 2017, "Pruning Filters for Efficient ConvNets": in each prunable layer the filters with
the smallest sum of |weights| go, with the channels of the norm after them and the matching input
channels of every consumer. Supported: plain conv stacks (`features` of conv/BN/activation/pool,
then a Linear head: compact_cnn, mnist_cnn, vgg*, alexnet) and ResNet basic/bottleneck blocks,
where only the channels inside a block are pruned and the residual-add channels are left intact
(the standard safe choice: every block of a stage adds onto the same channels).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.layers.bottleneck import Bottleneck
from cnnkit.layers.residual import BasicBlock
from cnnkit.models.channel_plan import (
    ChannelConsumer,
    ChannelGroup,
    NarrowedGroup,
    narrow_group,
    refresh_feature_info,
)
from cnnkit.models.resnet import ResNet

# Leaves a plain `features` stack may hold: anything else (SE, concat, depthwise) breaks the chain.
_PLAIN_LEAVES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.MaxPool2d, nn.AvgPool2d,
                 nn.Dropout, nn.Identity)

SUPPORTED = "plain conv stacks (compact_cnn, mnist_cnn, vgg*, alexnet) and ResNet basic/bottleneck blocks"


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The prunable conv -> norm -> consumers groups of `model`, or a CnnkitError naming its family."""
    if isinstance(model, ResNet):
        groups = _resnet_groups(model)
    else:
        groups = _plain_groups(model)
    if not groups:
        raise CnnkitError(f"structured channel pruning supports {SUPPORTED}; {type(model).__name__} is not one of them")
    return groups


def _resnet_groups(model: ResNet) -> list[ChannelGroup]:
    groups = []
    for name, block in model.named_modules():
        if isinstance(block, BasicBlock):
            groups.append(ChannelGroup(f"{name}.conv1", f"{name}.bn1", (ChannelConsumer(f"{name}.conv2"),)))
        elif isinstance(block, Bottleneck) and block.conv2.groups == 1:
            groups.append(ChannelGroup(f"{name}.conv1", f"{name}.bn1", (ChannelConsumer(f"{name}.conv2"),)))
            groups.append(ChannelGroup(f"{name}.conv2", f"{name}.bn2", (ChannelConsumer(f"{name}.conv3"),)))
    return groups


def _plain_groups(model: nn.Module) -> list[ChannelGroup]:
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        return []
    leaves = [(f"features.{n}", m) for n, m in features.named_modules() if not list(m.children())]
    if any(not isinstance(m, _PLAIN_LEAVES) for _, m in leaves):
        return []
    convs = [(n, m) for n, m in leaves if isinstance(m, nn.Conv2d)]
    if not convs or any(m.groups != 1 for _, m in convs):
        return []
    head = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)), None)
    last_channels = convs[-1][1].out_channels
    if head is None or head[1].in_features % last_channels:
        return []
    groups = []
    for index, (name, conv) in enumerate(convs):
        position = next(i for i, (n, _) in enumerate(leaves) if n == name)
        after = leaves[position + 1][1] if position + 1 < len(leaves) else None
        norm = leaves[position + 1][0] if isinstance(after, nn.BatchNorm2d) else None
        if index + 1 < len(convs):
            consumer = ChannelConsumer(convs[index + 1][0])
        else:
            consumer = ChannelConsumer(head[0], head[1].in_features // last_channels)
        groups.append(ChannelGroup(name, norm, (consumer,)))
    return groups


def l1_keep(conv: nn.Conv2d, fraction_removed: float) -> torch.Tensor:
    """Sorted indices of the filters to keep: the ceil((1 - fraction) * C) largest by L1 norm (>= 1)."""
    norms = conv.weight.detach().abs().flatten(1).sum(dim=1)
    keep = max(1, math.ceil((1.0 - fraction_removed) * conv.out_channels - 1e-9))
    return torch.topk(norms, keep).indices.sort().values.cpu()


@torch.no_grad()
def zero_channels(model: nn.Module, group: ChannelGroup, keep: torch.Tensor) -> None:
    """Make the channels of `group` outside `keep` output exactly zero (filter, bias, norm scale
    and shift): the masked, unpruned model that the narrowed one must reproduce."""
    conv = model.get_submodule(group.conv)
    removed = torch.ones(conv.out_channels, dtype=torch.bool)
    removed[keep] = False
    conv.weight[removed.to(conv.weight.device)] = 0
    for layer, names in ((conv, ("bias",)), (model.get_submodule(group.norm) if group.norm else None, ("weight", "bias"))):
        for attr in names:
            value = getattr(layer, attr, None) if layer is not None else None
            if value is not None:
                value[removed.to(value.device)] = 0


def prune_channels(model: nn.Module, fraction_removed: float) -> tuple[nn.Module, tuple[NarrowedGroup, ...]]:
    """A smaller dense copy of `model` with `fraction_removed` of each group's filters removed by
    L1 norm, and the plan that `cnnkit.models.channel_plan.apply_channel_plan` rebuilds it from.
    Checked before returning: on a random batch it must equal the masked unpruned model."""
    if not 0.0 < fraction_removed < 1.0:
        raise CnnkitError(f"--sparsity for --structured channels is the fraction of filters removed, in (0, 1); "
                          f"got {fraction_removed}")
    groups = channel_groups(model)
    pruned, masked = copy.deepcopy(model).eval(), copy.deepcopy(model).eval()
    plan = []
    for group in groups:
        keep = l1_keep(model.get_submodule(group.conv), fraction_removed)  # "independent" norms (Li et al. 3.2)
        zero_channels(masked, group, keep)
        narrow_group(pruned, group, keep)
        plan.append(NarrowedGroup(group, len(keep)))
    refresh_feature_info(pruned)
    _check_equivalent(pruned, masked, model)
    first = model.get_submodule(groups[0].conv).weight
    if first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last):
        pruned = pruned.to(memory_format=torch.channels_last)  # the new layers in the model's own format
    return pruned.train(model.training), tuple(plan)


@torch.no_grad()
def _check_equivalent(pruned: nn.Module, masked: nn.Module, model: nn.Module) -> None:
    device = next(model.parameters()).device
    size = getattr(getattr(model, "default_cfg", None), "input_size", (3, 64, 64))
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn((2, *size), generator=generator).to(device)
    expected, got = masked(batch), pruned(batch)
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()) + 1e-6):
        worst = float((got - expected).abs().max())
        raise CnnkitError(f"channel pruning changed the outputs of {type(model).__name__} by up to {worst:.3g}; "
                          "its structure is not the one assumed (a plain conv stack or ResNet blocks)")
