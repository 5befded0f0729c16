"""Multi-scale features (`feature_info`, `create_model(..., features_only=True)`) against timm.

The oracle is tests/models/reference/features.json (tools/make_reference_fixtures.py
--features-only): timm's `features_only=True` channels, reductions, module names and parameter
counts for every zoo model timm has (`TIMM_FEATURES` there maps our names to timm's:
efficientnet_v2_s -> tf_efficientnetv2_s, mobilenet_v2 -> mobilenetv2_100, mobilenet_v3_large /
_small -> mobilenetv3_large_100 / _small_100, regnet_y_400mf / _1_6gf -> regnety_004 / _016; the
others share the name), feature-map shapes on a 96x96 input for a few, and per-channel means of
the feature maps of a few after the name-keyed fill. Shapes of every model are checked on the meta
device (no compute); the extractor's maps equal the full model's intermediate activations bit for bit.

No model's stage choice differs from timm's: channels, reductions and parameter counts agree for
all 43 models timm has (including VGG's stride-1 first stage and its last max-pool as the stride-32
stage, MobileNetV3's final 1x1 conv as its last stage, and ResNetV2's last stage taken before the
final pre-activation norm, so that map is not `forward_features`' output). The 8 models timm lacks
(NOT_IN_TIMM) follow the same rule: the last module at each total stride, checked on their shapes.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from cnnkit.deploy.channels import prune_channels
from cnnkit.errors import CnnkitError
from cnnkit.models.channel_plan import ChannelConsumer, ChannelGroup, NarrowedGroup, apply_channel_plan
from cnnkit.models.factory import create_model, list_models
from cnnkit.models.feature_info import FeatureInfo, FeatureStage, last_per_reduction
from cnnkit.models.features import FeatureExtractor, RemovedModule
from models.reference.name_keyed_fill import name_keyed_state_dict, reference_input

REFERENCE = json.loads((Path(__file__).parent / "reference" / "features.json").read_text())
TIMM = {name: record for name, record in REFERENCE.items() if not name.startswith("_")}
# Zoo models timm does not have (torchvision's or the project's own): their stages follow the same
# rule (the last module at each stride) and are checked against their shapes only.
NOT_IN_TIMM = {"alexnet", "googlenet", "shufflenet_v2_x1_0", "squeezenet1_1", "lenet5", "mnist_cnn",
               "compact_cnn", "all_cnn_c"}
# Our stage module -> timm's, where the layouts name the same module differently. timm's `act1` is
# ResNet's stem ReLU (torchvision's `relu`); timm's DenseNet `norm0` / `norm5` are BatchNormAct2d
# (BN + ReLU): our `relu0` / `relu5` after the BN give the same map; RegNet's stages `sN` are
# torchvision's `trunk_output.blockN`.
TIMM_RENAMES = ((r"^relu$", "act1"), (r"^features\.relu([05])$", r"features.norm\1"),
                (r"^trunk_output\.block(\d)$", r"s\1"))
# Same stages, named by another layout: torchvision's flat `features.N` (timm: `blocks.S` per stage,
# `stages.S` for ConvNeXt whose downsamplers sit between them). Channels, reductions and parameter
# counts are compared for these too.
TIMM_NAMES_DIFFER = {name for name in TIMM if name.startswith(("convnext", "efficientnet", "mobilenet_v"))}
# Unpadded convs (k x k, padding 0) make a map (H - k) / s + 1 rather than H / s: the reduction is
# then checked as the change of size per 32 input pixels, exactly 32 / reduction for every model.
UNPADDED = {"alexnet", "all_cnn_c", "lenet5", "squeezenet1_1", "inception_v3", "legacy_xception"}
SIZE = {"inception_v3": 96}  # its stem needs >= 75
DEFAULT_SIZE = 64


def meta_model(name: str) -> nn.Module:
    with torch.device("meta"):
        return create_model(name)


def stage_shapes(extractor: FeatureExtractor, size: int) -> list[tuple[int, ...]]:
    channels = extractor.model.get_submodule(extractor.model.default_cfg.first_conv).in_channels
    maps = extractor(torch.empty(2, channels, size, size, device="meta"))
    return [tuple(m.shape[1:]) for m in maps]


def test_every_zoo_model_is_compared_with_timm_or_listed_as_absent():
    assert set(TIMM) | NOT_IN_TIMM == set(list_models())
    assert not set(TIMM) & NOT_IN_TIMM


@pytest.mark.parametrize("name", list_models())
def test_feature_info_matches_timm_and_the_maps_it_describes(name: str):
    model = meta_model(name)
    info = model.feature_info
    assert isinstance(info, FeatureInfo) and all(isinstance(s, FeatureStage) for s in info.stages)
    assert info.reduction() == sorted(set(info.reduction())), "one stage per stride, shallow to deep"
    if name in TIMM:
        timm = TIMM[name]
        assert (info.channels(), info.reduction()) == (timm["channels"], timm["reduction"]), timm["timm"]
        if name not in TIMM_NAMES_DIFFER:
            renamed = [name_of(module) for module in info.module_name()]
            assert renamed == timm["module"], timm["timm"]
    extractor = FeatureExtractor(model)
    assert_maps_described(extractor, info, SIZE.get(name, DEFAULT_SIZE), padded=name not in UNPADDED)
    if name in TIMM:  # the extractor keeps exactly timm's parameters: no classifier, nothing after the stages
        assert sum(p.numel() for p in extractor.parameters()) == TIMM[name]["params"]
        if "shapes" in TIMM[name]:
            assert stage_shapes(extractor, 96) == [tuple(s) for s in TIMM[name]["shapes"]]
    assert not any(key.startswith(f"model.{model.head_path}") for key in extractor.state_dict())


def assert_maps_described(extractor: FeatureExtractor, info: FeatureInfo, size: int, *, padded: bool) -> None:
    """Each map has its stage's channels and is size / reduction wide when every conv is padded;
    else it grows by exactly 32 / reduction per 32 more input pixels."""
    small = stage_shapes(extractor, size)
    large = small if padded else stage_shapes(extractor, size + 32)
    for stage, (c, h, w), (_, h2, _) in zip(info.stages, small, large, strict=True):
        assert c == stage.channels and h == w, stage
        assert h == size // stage.reduction if padded else h2 - h == 32 // stage.reduction, stage


@pytest.mark.parametrize("name, options, channels, reductions", [
    ("resnet18", {"stem": "cifar"}, [64, 128, 256, 512], [1, 2, 4, 8]),  # no stride-2 stem, no max-pool
    ("resnet50", {"stem": "deep"}, [128, 256, 512, 1024, 2048], [2, 4, 8, 16, 32]),  # 64-64-128 stem
    *[(v["model"], v["options"], v["channels"], v["reduction"]) for v in REFERENCE["_variants"]],  # timm's
])
def test_feature_info_follows_the_builder_options(name: str, options: dict, channels: list, reductions: list):
    """Widths and strides come from the config the options change (width_mult: timm's *_050, *_075)."""
    with torch.device("meta"):
        model = create_model(name, **options)
    assert (model.feature_info.channels(), model.feature_info.reduction()) == (channels, reductions)
    assert_maps_described(FeatureExtractor(model), model.feature_info, 64, padded=True)


def name_of(module: str) -> str:
    for pattern, timm_name in TIMM_RENAMES:
        module = re.sub(pattern, timm_name, module)
    return module


@pytest.mark.parametrize("name", [name for name in TIMM if "channel_means" in TIMM[name]])
def test_feature_maps_equal_timms_after_the_name_keyed_fill(name: str):
    """Same weights (both state dicts filled by name), float64: the maps are timm's, activations included."""
    model = meta_model(name).eval()
    model.load_state_dict(name_keyed_state_dict(model), strict=True, assign=True)
    extractor = FeatureExtractor(model).eval()
    with torch.no_grad():
        maps = extractor(reference_input(TIMM[name]["values_input_size"]))
    for feature, expected in zip(maps, TIMM[name]["channel_means"], strict=True):
        torch.testing.assert_close(feature.mean(dim=(0, 2, 3)), torch.tensor(expected, dtype=torch.float64),
                                   rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "googlenet", "legacy_xception"])
def test_feature_maps_are_the_full_models_activations_bit_for_bit(name: str, tmp_path: Path):
    """One weight file loaded into the full model and the extractor (create_model's pretrained=)."""
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.float().contiguous() for k, v in name_keyed_state_dict(meta_model(name)).items()}, weights)
    full = create_model(name, pretrained=weights).eval()
    extractor = create_model(name, pretrained=weights, features_only=True, out_indices=(-1, 0, 2)).eval()
    captured: dict[str, torch.Tensor] = {}
    for module in extractor.feature_info.module_name():
        full.get_submodule(module).register_forward_hook(
            lambda m, a, out, module=module: captured.__setitem__(module, out.clone())
        )
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full(x)
        maps = extractor(x)
    assert [tuple(m.shape[1:2]) for m in maps] == [(c,) for c in extractor.feature_info.channels()]
    for module, feature in zip(extractor.feature_info.module_name(), maps, strict=True):
        assert torch.equal(feature, captured[module]), module


def test_out_indices_select_stages_in_the_order_given_and_count_from_the_end():
    extractor = FeatureExtractor(meta_model("resnet18"), out_indices=(3, -4))
    assert extractor.feature_info.module_name() == ["layer3", "layer1"]
    assert extractor.feature_info.channels() == [256, 64] and extractor.feature_info.reduction() == [16, 4]
    assert stage_shapes(extractor, 64) == [(256, 4, 4), (64, 16, 16)]


@pytest.mark.parametrize("out_indices", [(5,), (-6,), (1, 1), (1, -4), (), "1", (1.0,), (True,)])
def test_a_bad_out_index_is_an_error_naming_the_valid_range(out_indices):
    with pytest.raises(CnnkitError, match=r"out_indices") as error:
        create_model("resnet18", features_only=True, out_indices=out_indices)
    assert "resnet18" in str(error.value)
    if out_indices in [(5,), (-6,)]:
        assert "valid indices are -5..4" in str(error.value)


def test_out_indices_and_head_need_features_only_and_the_reverse():
    with pytest.raises(CnnkitError, match="out_indices needs features_only=True"):
        create_model("resnet18", out_indices=(1,))
    with pytest.raises(CnnkitError, match="takes no head"):
        from cnnkit.models.heads import HeadSpec

        create_model("resnet18", features_only=True, head=HeadSpec())


@pytest.mark.parametrize("name, out_indices", [(n, tuple(TIMM[n]["truncated"]["out_indices"]))
                                               for n in TIMM if "truncated" in TIMM[n]])
def test_the_extractor_stops_at_the_deepest_requested_stage_as_timm(name: str, out_indices: tuple[int, ...]):
    with torch.device("meta"):
        extractor = create_model(name, features_only=True, out_indices=out_indices)
    assert sum(p.numel() for p in extractor.parameters()) == TIMM[name]["truncated"]["params"]
    later = extractor.model.feature_info.module_name()[max(out_indices) + 1:]
    assert later and all(isinstance(extractor.model.get_submodule(m), RemovedModule) for m in later)
    with pytest.raises(CnnkitError, match="removed by FeatureExtractor"):
        extractor.model(torch.empty(1, 3, 64, 64, device="meta"))


def test_the_extractor_trains_its_stages_and_keeps_each_modules_mode():
    model = create_model("resnet18").train()
    model.bn1.eval()  # a frozen norm (cnnkit.train.frozen_norms) stays frozen through the meta passes
    assert not FeatureExtractor(model).model.bn1.training and model.layer1.training
    extractor = create_model("resnet18", features_only=True, out_indices=(1, 2)).train()
    maps = extractor(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    sum(m.square().mean() for m in maps).backward()
    assert all(p.grad is not None for p in extractor.parameters())
    assert [m.shape[1] for m in maps] == [64, 128]


def test_a_channel_plan_keeps_feature_info_true():
    model = create_model("compact_cnn")
    group = ChannelGroup("features.0.0", "features.0.1", (ChannelConsumer("features.2.0"),))
    apply_channel_plan(model, [NarrowedGroup(group, 20)])
    assert model.feature_info.channels() == [20, 64, 128, 256]
    assert [m.shape[1] for m in FeatureExtractor(model)(torch.randn(2, 1, 32, 32))] == [20, 64, 128, 256]
    pruned, _ = prune_channels(create_model("compact_cnn").eval(), 0.5)  # cnnkit prune --structured channels
    assert pruned.feature_info.channels() == [16, 32, 64, 128]
    assert [m.shape[1] for m in FeatureExtractor(pruned)(torch.randn(2, 1, 32, 32))] == [16, 32, 64, 128]


def test_last_per_reduction_keeps_the_last_layer_at_each_stride():
    info = last_per_reduction([("stem", 8, 2), ("a", 8, 1), ("pool", 8, 2), ("b", 16, 1), ("c", 32, 2)])
    assert info.module_name() == ["a", "b", "c"]
    assert info.channels() == [8, 16, 32] and info.reduction() == [2, 4, 8]
    assert info.resolve(None) == (0, 1, 2) and info.resolve((-1, 0)) == (2, 0)
    assert info.select((2, 0)).module_name() == ["c", "a"]


def test_concurrent_forwards_through_one_extractor_each_get_their_own_maps():
    extractor = create_model("resnet18", features_only=True, out_indices=(0, 1)).eval()
    inputs = [torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) for seed in range(8)]
    with torch.no_grad():
        expected = [extractor(x) for x in inputs]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(extractor, inputs))
    for mine, theirs in zip(got, expected, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))


def test_a_model_without_feature_info_is_refused():
    with pytest.raises(CnnkitError, match="no feature_info"):
        FeatureExtractor(nn.Sequential(nn.Conv2d(3, 4, 3)))  # type: ignore[arg-type]


@pytest.mark.parametrize("out_indices", [(0,), (3,)])
def test_a_model_already_cut_by_an_extractor_is_refused_by_name(out_indices: tuple[int, ...]):
    """A second FeatureExtractor over the same model (a deeper or a shallower stage) is a CnnkitError
    saying the model was cut (was: AttributeError 'RemovedModule has no attribute rep')."""
    model = meta_model("legacy_xception")
    extractor = FeatureExtractor(model, out_indices=(1,))
    with pytest.raises(CnnkitError, match="already cut by a FeatureExtractor.*block3"):
        FeatureExtractor(model, out_indices=out_indices)
    with pytest.raises(CnnkitError, match="is a FeatureExtractor"):
        FeatureExtractor(extractor, out_indices=(0,))  # type: ignore[arg-type]


def test_features_only_from_a_file_of_other_classes_drops_its_classifier(tmp_path: Path, caplog):
    """The extractor has no classifier: the file's is dropped, as for num_classes=0 (the note said it
    was re-initialised for the default 9 classes, a layer the extractor then removed)."""
    source = create_model("compact_cnn", num_classes=3)
    path = tmp_path / "w.safetensors"
    save_file({key: value.contiguous() for key, value in source.state_dict().items()}, path)
    caplog.set_level("INFO", logger="cnnkit")
    extractor = create_model("compact_cnn", features_only=True, pretrained=path)
    assert [r.getMessage() for r in caplog.records if r.name == "cnnkit"] == [
        f"{path}: classifier '{source.default_cfg.classifier}' dropped: the model has no classifier (file has 3)"]
    assert extractor.model.num_classes == 0
    assert torch.equal(extractor.model.get_submodule(source.default_cfg.first_conv).weight,
                       source.get_submodule(source.default_cfg.first_conv).weight)
