"""Narrower copies of a model: drop output channels of a conv together with everything that reads them.

A `ChannelGroup` names a conv, the norm right after it, and the layers consuming its channels
(a conv reads channel c as its input channel c; a Linear after flattening a (C, h, w) map reads
it as inputs c*h*w ... (c+1)*h*w - 1). Structured pruning (cnnkit.deploy) chooses which channels
to keep; a pruned run stores the plan (names and kept counts) in its summary.json so that loading
it rebuilds the narrow architecture before its weights are read (`apply_channel_plan`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.base import ClassifierModel
from cnnkit.models.feature_info import FeatureInfo
from cnnkit.models.features import measured_feature_info


@dataclass(frozen=True)
class ChannelConsumer:
    """A conv (per_channel 1) or a Linear reading `per_channel` flattened inputs per channel."""

    name: str
    per_channel: int = 1


@dataclass(frozen=True)
class ChannelGroup:
    conv: str
    norm: str | None
    consumers: tuple[ChannelConsumer, ...]



@dataclass(frozen=True)
class NarrowedGroup:
    """One step of a saved plan: `group.conv` keeps its first `kept` output channels."""

    group: ChannelGroup
    kept: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in a run's summary.json."""
        return {"conv": self.group.conv, "norm": self.group.norm, "kept": self.kept,
                "consumers": [[c.name, c.per_channel] for c in self.group.consumers]}

    @staticmethod
    def from_dict(entry: Mapping[str, Any]) -> NarrowedGroup:
        """Inverse of `to_dict`; a malformed entry is a CnnkitError quoting it."""
        try:
            consumers = tuple(ChannelConsumer(str(name), int(per)) for name, per in entry["consumers"])
            return NarrowedGroup(ChannelGroup(str(entry["conv"]), entry.get("norm"), consumers), int(entry["kept"]))
        except (KeyError, TypeError, ValueError) as error:
            raise CnnkitError(f"channel_plan entry {entry!r} is malformed ({error})") from None


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _conv_like(conv: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     conv.groups, conv.bias is not None, conv.padding_mode,
                     device=conv.weight.device, dtype=conv.weight.dtype)


@torch.no_grad()
def narrow_group(model: nn.Module, group: ChannelGroup, keep: torch.Tensor) -> None:
    """Keep only output channels `keep` (sorted indices) of `group.conv`, in place."""
    keep = keep.to(torch.long).cpu()
    conv = model.get_submodule(group.conv)
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        raise CnnkitError(f"{group.conv}: only ungrouped Conv2d outputs can be narrowed, got {conv}")
    narrow = _conv_like(conv, conv.in_channels, len(keep))
    narrow.weight.copy_(conv.weight[keep])
    if conv.bias is not None:
        narrow.bias.copy_(conv.bias[keep])
    _replace(model, group.conv, narrow.train(conv.training))
    if group.norm is not None:
        norm = model.get_submodule(group.norm)
        if not isinstance(norm, nn.BatchNorm2d):
            raise CnnkitError(f"{group.norm}: only BatchNorm2d can be narrowed, got {type(norm).__name__}")
        thin = nn.BatchNorm2d(len(keep), norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
        state = norm.state_dict()
        thin.load_state_dict({k: v if k == "num_batches_tracked" else v[keep.to(v.device)] for k, v in state.items()})
        _replace(model, group.norm, thin.to(next(iter(state.values())).device).train(norm.training))
    for consumer in group.consumers:
        _narrow_input(model, consumer, keep)


def refresh_feature_info(model: nn.Module) -> None:
    """After `narrow_group` calls: a zoo model's stage widths as its narrowed layers now give them
    (a stage may end on a narrowed conv); one pass on the meta device."""
    if isinstance(model, ClassifierModel) and isinstance(getattr(model, "feature_info", None), FeatureInfo):
        model.feature_info = measured_feature_info(model)


def _narrow_input(model: nn.Module, consumer: ChannelConsumer, keep: torch.Tensor) -> None:
    layer = model.get_submodule(consumer.name)
    if isinstance(layer, nn.Conv2d) and layer.groups == 1:
        thin = _conv_like(layer, len(keep), layer.out_channels)
        thin.weight.copy_(layer.weight[:, keep])
    elif isinstance(layer, nn.Linear):
        per = consumer.per_channel
        columns = (keep[:, None] * per + torch.arange(per)[None]).flatten()
        thin = nn.Linear(len(columns), layer.out_features, layer.bias is not None,
                         device=layer.weight.device, dtype=layer.weight.dtype)
        thin.weight.copy_(layer.weight[:, columns])
    else:
        raise CnnkitError(f"{consumer.name}: cannot narrow the input of {type(layer).__name__}")
    if layer.bias is not None:
        thin.bias.copy_(layer.bias)
    _replace(model, consumer.name, thin.train(layer.training))


def apply_channel_plan(model: nn.Module, plan: Sequence[NarrowedGroup]) -> nn.Module:
    """Give `model` the narrow shapes a saved plan records (its weights are loaded afterwards)."""
    for step in plan:
        narrow_group(model, step.group, torch.arange(step.kept))
    refresh_feature_info(model)
    return model
