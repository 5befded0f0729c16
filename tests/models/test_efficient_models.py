"""MobileNet v1/v2/v3, EfficientNet B0-B7 and ConvNeXt: published parameter counts, shapes, scaling, overrides."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import cnnkit
from cnnkit.errors import CnnkitError
from cnnkit.models.base import ClassifierModel
from models.reference.published import published_figures


PUBLISHED = [
    "mobilenetv1_100",
    "mobilenet_v2",
    "mobilenet_v3_large",
    *(f"efficientnet_b{i}" for i in range(8)),
    "convnext_tiny",
]
ALL = [*PUBLISHED, "mobilenet_v3_small", "convnext_small"]

# EfficientNet paper, Table 1 / Section 3.3: B0 stages (in_channels, repeats) and the B-variant coefficients.
B0_STAGES = [(32, 1), (16, 2), (24, 2), (40, 3), (80, 3), (112, 4), (192, 1)]
B0_LAST_OUT = 320
COEFFICIENTS = {"b3": (1.2, 1.4), "b7": (2.0, 3.1)}


@pytest.fixture(scope="module")
def zoo() -> dict:
    return published_figures()


def _on_meta(name: str, **kwargs: object) -> nn.Module:
    """Build without allocating weights: enough for structure and parameter counts."""
    with torch.device("meta"):
        return cnnkit.create_model(name, **kwargs)


@pytest.mark.parametrize("name", PUBLISHED)
def test_parameter_count_matches_published(name: str, zoo: dict) -> None:
    model = _on_meta(name)
    assert sum(p.numel() for p in model.parameters()) == zoo[name]["params"]


@pytest.mark.parametrize("name", PUBLISHED)
def test_default_input_size_matches_published(name: str, zoo: dict) -> None:
    resolution = zoo[name]["input"]
    assert _on_meta(name).default_cfg.input_size == (3, resolution, resolution)


@pytest.mark.parametrize("name", ALL)
def test_forward_shapes_and_head_contract(name: str) -> None:
    torch.manual_seed(0)
    model = cnnkit.create_model(name, num_classes=7).eval()
    assert isinstance(model, ClassifierModel)
    cfg = model.default_cfg
    classifier, first_conv = model.get_submodule(cfg.classifier), model.get_submodule(cfg.first_conv)
    assert isinstance(classifier, nn.Linear) and classifier.out_features == 7 == cfg.num_classes
    assert isinstance(first_conv, nn.Conv2d) and first_conv.in_channels == 3
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        logits = model(x)
        head_of_pre_logits = classifier(pre_logits)
    assert features.shape == (2, model.num_features, 2, 2)  # every family downsamples by 32
    assert pre_logits.shape == (2, classifier.in_features)
    assert logits.shape == (2, 7)
    torch.testing.assert_close(logits, head_of_pre_logits)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["mobilenetv1_100", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny"])
def test_train_step_and_in_chans(name: str) -> None:
    torch.manual_seed(0)
    model = cnnkit.create_model(name, num_classes=3, in_chans=1).train()
    assert model.default_cfg.input_size[0] == 1
    logits = model(torch.randn(2, 1, 64, 64))
    nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    first_conv = model.get_submodule(model.default_cfg.first_conv)
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


def _round_filters(channels: int, width: float) -> int:
    """TF EfficientNet reference `round_filters` (divisor 8), written out independently of cnnkit."""
    filters = channels * width
    rounded = max(8, int(filters + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * filters else rounded


@pytest.mark.parametrize("variant", sorted(COEFFICIENTS))
def test_compound_scaling_widths_and_depths(variant: str) -> None:
    width, depth = COEFFICIENTS[variant]
    model = _on_meta(f"efficientnet_{variant}")
    assert model.features[0][0].out_channels == _round_filters(32, width)
    for index, (in_channels, repeats) in enumerate(B0_STAGES, start=1):
        stage = model.features[index]
        assert len(stage) == math.ceil(repeats * depth)
        assert stage[0].block[0][0].in_channels == _round_filters(in_channels, width)
    assert model.num_features == 4 * _round_filters(B0_LAST_OUT, width)


def test_efficientnet_b7_has_55_blocks_and_wider_stem() -> None:
    # The published B7 (TF reference) has 55 MBConv blocks and a 64-channel stem.
    model = _on_meta("efficientnet_b7")
    assert sum(len(stage) for stage in model.features[1:-1]) == 55
    assert model.features[0][0].out_channels == 64


def test_efficientnet_b5_to_b7_use_tf_batchnorm_settings() -> None:
    for name, eps in [("efficientnet_b4", 1e-5), ("efficientnet_b5", 1e-3), ("efficientnet_b7", 1e-3)]:
        norms = [m for m in _on_meta(name).modules() if isinstance(m, nn.BatchNorm2d)]
        assert {m.eps for m in norms} == {eps}


def test_overrides_reach_the_model() -> None:
    narrow = _on_meta("mobilenet_v2", width_mult=0.5)
    assert narrow.features[0][0].out_channels == 16 and narrow.num_features == 1280
    drop = _on_meta("efficientnet_b0", drop_rate=0.5, stochastic_depth_prob=0.4)
    assert drop.classifier[0].p == 0.5
    probs = [m.stochastic_depth.p for stage in drop.features[1:-1] for m in stage]
    assert probs == pytest.approx([0.4 * i / 16 for i in range(16)])
    assert _on_meta("efficientnet_b3").classifier[0].p == 0.3  # the variant's own dropout
    convnext = _on_meta("convnext_tiny", stochastic_depth_prob=0.2)
    last = convnext.features[-1][-1]
    assert last.stochastic_depth.p == pytest.approx(0.2)
    assert _on_meta("mobilenet_v3_large", width_mult=0.75).classifier[0].out_features == 960


@pytest.mark.parametrize(
    "name", ["mobilenetv1_100", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny"]
)
def test_unknown_override_is_an_error_naming_it(name: str) -> None:
    with pytest.raises(CnnkitError, match="widht_mult"):
        cnnkit.create_model(name, widht_mult=2.0)
