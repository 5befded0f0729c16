"""Which map to trust, computed from the model at the input size: on small images with a coarse
last stage, LayerCAM at the deepest stage with a map of at least 16x16."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit.explain.layer_advice import advise_layer
from cnnkit.models.factory import create_model
from explain.reference_models import filled


def test_a_small_wafer_sized_input_is_sent_to_layercam_at_the_16x16_stage():
    advice = advise_layer(filled("compact_cnn"), torch.zeros(1, 1, 32, 32, dtype=torch.float64))
    assert (advice.default_layer, advice.default_map) == ("features", (4, 4))
    assert (advice.finer_layer, advice.finer_map) == ("features.2", (16, 16))
    assert advice.small_and_coarse and (advice.method, advice.layer) == ("layercam", "features.2")
    text = advice.text()
    assert "32x32 inputs the default layer features gives 4x4 cells" in text
    assert "each cell covers about 8x8 pixels" in text
    assert "trust LayerCAM at features.2 (16x16)" in text and "explain_wafer" in text


@pytest.mark.parametrize(("size", "default_map", "finer"), [(64, (8, 8), "features.4"), (128, (16, 16), "features.4")])
def test_the_advice_follows_the_input_size(size, default_map, finer):
    advice = advise_layer(filled("compact_cnn"), torch.zeros(1, 1, size, size, dtype=torch.float64))
    assert advice.default_map == default_map and advice.finer_layer == finer
    assert advice.small_and_coarse == (size == 64)
    assert (advice.method, advice.layer) == (("layercam", finer) if size == 64 else ("gradcam", "features"))
    if size == 128:
        assert "Grad-CAM at features suits objects that span several cells" in advice.text()


def test_a_large_input_keeps_gradcam_at_the_last_stage_and_names_a_finer_one():
    advice = advise_layer(filled("resnet18"), torch.zeros(1, 3, 224, 224, dtype=torch.float64))
    assert (advice.default_layer, advice.default_map, advice.small_and_coarse) == ("layer4", (7, 7), False)
    assert (advice.finer_layer, advice.finer_map) == ("layer2", (28, 28))
    assert (advice.method, advice.layer) == ("gradcam", "layer4")


@pytest.mark.parametrize(("name", "stage"), [("resnet50", "layer1"), ("mobilenet_v2", "features.3")])
def test_the_finer_layer_is_a_stage_not_a_conv_inside_the_next_stage(name, stage):
    # A bottleneck's first 1x1 conv (layer2.0.conv1/bn1) and an inverted residual's expansion still run
    # at the finer size before the block's stride; the advice names the stage that ends there.
    advice = advise_layer(create_model(name).eval(), torch.zeros(1, 3, 64, 64))
    assert (advice.finer_layer, advice.finer_map) == (stage, (16, 16))


def test_without_a_finer_layer_the_advice_says_so():
    model = nn.Sequential(nn.Conv2d(1, 2, 4, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 3))
    advice = advise_layer(model, torch.zeros(1, 1, 16, 16))
    assert advice.default_map == (4, 4) and advice.finer_layer is None and advice.layer == "1"
    assert "No earlier layer has a finer map" in advice.text()
