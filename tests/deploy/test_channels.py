"""L1 filter pruning (Li et al. 2017): the narrow model equals the unpruned one with those channels zeroed."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn
from tiny_runs import randomise_batchnorm

import cnnkit
from cnnkit.deploy.channels import channel_groups, prune_channels
from cnnkit.errors import CnnkitError
from cnnkit.models.base import DefaultCfg
from cnnkit.models.channel_plan import NarrowedGroup, apply_channel_plan
from cnnkit.models.vgg import VGG, VGGConfig


def _model(name: str) -> tuple[nn.Module, tuple[int, int, int]]:
    """The model (seeded weights: each run tests the same draw) and its input size."""
    torch.manual_seed(0)
    if name == "small_vgg_bn":  # VGG's own code, narrow stages so the 4096-wide head stays small
        cfg = DefaultCfg(input_size=(3, 32, 32), first_conv="features.0", classifier="classifier.6", num_classes=4)
        return VGG(VGGConfig(((8,), (16, 16)), batch_norm=True), cfg, 4, 3, norm_layer=nn.BatchNorm2d), (3, 32, 32)
    model = cnnkit.create_model(name, num_classes=4)
    size = {"compact_cnn": (1, 32, 32), "mnist_cnn": (1, 28, 28)}.get(name, (3, 32, 32))
    model.default_cfg = dataclasses.replace(model.default_cfg, input_size=size)
    return model, size


def _hand_masked(model: nn.Module, fraction: float) -> nn.Module:
    """The oracle: zero the lowest-L1 filters of each group with their BN scale and shift."""
    import copy

    masked = copy.deepcopy(model)
    with torch.no_grad():
        for group in channel_groups(model):
            conv = masked.get_submodule(group.conv)
            norms = conv.weight.abs().sum(dim=(1, 2, 3))
            keep = math.ceil((1 - fraction) * conv.out_channels)
            drop = norms.argsort(descending=True)[keep:]
            conv.weight[drop] = 0
            norm = masked.get_submodule(group.norm)
            norm.weight[drop], norm.bias[drop] = 0, 0
    return masked


@pytest.mark.parametrize("name", ["compact_cnn", "mnist_cnn", "small_vgg_bn", "resnet18", "resnet50"])
def test_pruned_model_equals_the_masked_unpruned_one(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    model, size = _model(name)
    randomise_batchnorm(model, generator)
    model.eval()
    small, plan = prune_channels(model, 0.5)
    batch = torch.randn(3, *size, generator=generator)
    with torch.no_grad():
        expected, got = _hand_masked(model, 0.5)(batch), small(batch)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    convs = [e.group.conv for e in plan]
    before = sum(model.get_submodule(c).weight.numel() for c in convs)
    after = sum(small.get_submodule(c).weight.numel() for c in convs)
    assert after <= 0.5 * before, "half the filters of every group, and their input columns downstream"
    for entry in plan:
        assert small.get_submodule(entry.group.conv).out_channels == entry.kept
        assert entry.kept == math.ceil(0.5 * model.get_submodule(entry.group.conv).out_channels)
        assert NarrowedGroup.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry, "summary.json round trip"
    rebuilt = apply_channel_plan(_model(name)[0], plan)
    rebuilt.load_state_dict(small.state_dict())  # strict: the plan alone gives every shape
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(batch), got)


def test_resnet_keeps_the_residual_channels() -> None:
    model, _ = _model("resnet18")
    small, plan = prune_channels(model.eval(), 0.5)
    assert {e.group.conv.rsplit(".", 1)[1] for e in plan} == {"conv1"}, "only the block-inner convs"
    for name, module in model.named_modules():
        if name.endswith(("conv2", "downsample.0")) or name == "conv1":
            assert small.get_submodule(name).out_channels == module.out_channels


def test_unsupported_family_is_named() -> None:
    with pytest.raises(CnnkitError, match="MobileNetV2 is not one of them"):
        prune_channels(cnnkit.create_model("mobilenet_v2", num_classes=3).eval(), 0.5)


def test_the_plan_round_trips_through_summary_json_and_a_bad_one_is_named(tmp_path) -> None:
    from cnnkit.inference import RunSummary, read_summary, write_summary

    model, _ = _model("resnet18")
    _, plan = prune_channels(model.eval(), 0.5)
    write_summary(tmp_path, RunSummary(model_name="resnet18", class_names=("a", "b"), default_cfg=DefaultCfg(),
                                       channel_plan=plan))
    assert read_summary(tmp_path).channel_plan == plan
    record = json.loads((tmp_path / "summary.json").read_text())
    del record["channel_plan"][0]["kept"]
    (tmp_path / "summary.json").write_text(json.dumps(record))
    with pytest.raises(CnnkitError, match=r"summary.json: channel_plan entry .* is malformed"):
        read_summary(tmp_path)
