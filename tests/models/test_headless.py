"""`num_classes=0` and `reset_classifier(0)` as timm has them: a model whose forward returns its
(N, D) pre-logits, checked zoo-wide (shapes and parameter counts on the meta device), against
timm's own counts and widths (tests/models/reference/headless.json, from
tools/make_reference_fixtures.py), and numerically for one model of every class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.base import ClassifierModel
from cnnkit.models.factory import create_model, list_models
from cnnkit.models.heads import HeadSpec, NoClassifier

HEADLESS = json.loads((Path(__file__).parent / "reference" / "headless.json").read_text())
SMALL_INPUT = {"inception_v3": 80, "googlenet": 96}  # the least sizes their strides take; others 32-64 px
# One registered model of every ClassifierModel subclass in the zoo, the smallest of its class.
ONE_PER_CLASS = {
    "AlexNet": "alexnet",
    "AllConvNet": "all_cnn_c",
    "CompactCNN": "mnist_cnn",
    "ConvNeXt": "convnext_tiny",
    "DenseNet": "densenet121",
    "EfficientNet": "efficientnet_b0",
    "EfficientNetV2": "efficientnet_v2_s",
    "GoogLeNet": "googlenet",
    "InceptionV3": "inception_v3",
    "LeNet5": "lenet5",
    "MobileNetV1": "mobilenetv1_100",
    "MobileNetV2": "mobilenet_v2",
    "MobileNetV3": "mobilenet_v3_small",
    "RegNet": "regnet_y_400mf",
    "ResNet": "resnet18",
    "ResNetV2": "resnetv2_50",
    "ShuffleNetV2": "shufflenet_v2_x1_0",
    "SqueezeNet": "squeezenet1_1",
    "VGG": "vgg11",
    "Xception": "legacy_xception",
}


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def small_input(model: ClassifierModel, name: str, **factory) -> torch.Tensor:
    channels, height, _ = model.default_cfg.input_size
    size = SMALL_INPUT.get(name, min(height, 64))
    if factory.get("device") == "meta":
        return torch.empty(2, channels, size, size, **factory)
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list_models())
def test_zero_classes_drop_exactly_the_classifier_in_every_zoo_model(name: str):
    """create_model(num_classes=0) and reset_classifier(0) agree: num_classes 0 everywhere, a
    parameter-free Identity at default_cfg.classifier, the zoo count minus the classifier's
    parameters, forward giving the (N, D) pre-logits, D = num_features (forward_features' channels)
    unless the head has hidden layers; reset_classifier(k) brings k classes back."""
    with torch.device("meta"):
        full = create_model(name, num_classes=10)
        headless = create_model(name, num_classes=0)
    classifier = full.get_submodule(full.default_cfg.classifier)
    expected = parameter_count(full) - parameter_count(classifier)
    removed = headless.get_submodule(headless.default_cfg.classifier)
    assert isinstance(removed, nn.Identity) and isinstance(removed, NoClassifier)
    assert headless.num_classes == headless.default_cfg.num_classes == 0
    assert parameter_count(headless) == expected
    # The width is num_features, or where the head has hidden layers (VGG, MobileNetV3) its last
    # hidden width, timm's head_hidden_size.
    hidden = [m for m in headless.get_submodule(headless.head_path).modules() if isinstance(m, nn.Linear)]
    width = hidden[-1].out_features if hidden else headless.num_features
    x = small_input(headless, name, device="meta")
    features = headless.eval().forward_features(x)
    # num_features is timm's: the channels of forward_features (AlexNet, VGG and LeNet-5 had none).
    assert headless.num_features == features.shape[1]
    pre_logits = headless.forward_head(features, pre_logits=True)
    assert headless(x).shape == pre_logits.shape == (2, width) and removed.in_features == width
    full.reset_classifier(0)
    assert full.num_classes == 0 and parameter_count(full) == expected
    full.reset_classifier(7)
    assert full.num_classes == full.default_cfg.num_classes == 7
    assert parameter_count(full) == expected + parameter_count(full.get_submodule(full.default_cfg.classifier))
    assert full.eval()(x).shape == (2, 7)


@pytest.mark.parametrize("name", sorted(set(HEADLESS) - {"_about"}))
def test_zero_class_models_match_timm_counts_and_widths(name: str):
    reference = HEADLESS[name]
    with torch.device("meta"):
        model = create_model(name, num_classes=0).eval()
        width = model(small_input(model, name, device="meta")).shape[1]
    assert (parameter_count(model), width) == (reference["params"], reference["output_width"]), reference["timm"]


def test_one_per_class_covers_every_class_of_the_zoo():
    with torch.device("meta"):
        classes = {type(create_model(name)).__name__ for name in list_models()}
    assert classes == set(ONE_PER_CLASS)


@pytest.mark.parametrize("name", sorted(ONE_PER_CLASS.values()))
def test_zero_class_forward_is_the_pre_logits(name: str):
    torch.manual_seed(0)
    model = create_model(name, num_classes=0).eval()
    x = small_input(model, name)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x), pre_logits=True))


def test_zero_classes_keep_the_head_dropout_in_training():
    """As timm's ResNet: the features pass the head's dropout (p=0.5 here) in train mode."""
    model = create_model("resnet18", num_classes=0, drop_rate=0.5).train()
    x = small_input(model, "resnet18")
    with torch.no_grad():
        pooled = model.forward_features(x).mean(dim=(2, 3))
        torch.manual_seed(1)
        expected = F.dropout(pooled, p=0.5, training=True)
        torch.manual_seed(1)
        torch.testing.assert_close(model(x), expected)


def test_zero_classes_with_an_mlp_head_end_on_its_hidden_layer():
    model = create_model("resnet18", num_classes=0, head=HeadSpec((32,), 0.1)).eval()
    assert [type(m).__name__ for m in model.fc] == ["Linear", "ReLU", "Dropout", "NoClassifier"]
    x = small_input(model, "resnet18")
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.relu(model.fc[0](model.forward_features(x).mean(dim=(2, 3)))))
    model.reset_classifier(4)
    assert model.fc[3].out_features == 4 == model.num_classes and model(x).shape == (2, 4)


@pytest.mark.parametrize("name, aux", [("googlenet", ("aux1.fc2", "aux2.fc2")), ("inception_v3", ("AuxLogits.fc",))])
def test_zero_classes_also_remove_and_restore_the_auxiliary_classifiers(name: str, aux: tuple[str, ...]):
    with torch.device("meta"):
        model = create_model(name, num_classes=0, aux_logits=True)
        assert all(isinstance(model.get_submodule(path), NoClassifier) for path in aux)
        model.reset_classifier(3)
    assert [model.get_submodule(path).out_features for path in aux] == [3] * len(aux)


@pytest.mark.parametrize("bad", [-1, 2.0, True])
def test_reset_classifier_refuses_what_is_not_a_class_count(bad):
    with torch.device("meta"):
        model = create_model("resnet18")
    with pytest.raises(CnnkitError, match=r"num_classes must be an int >= 0, got"):
        model.reset_classifier(bad)
