"""The one classifier head: HeadSpec parsing, the soil recipe's MLP head against its known parameter
count, and `reset_classifier` keeping num_classes single-sourced for every zoo model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.base import ClassifierModel
from cnnkit.models.factory import create_model, list_models
from cnnkit.models.heads import HeadSpec, build_head, head_path_of

SMALL_INPUT = {"inception_v3": 80}  # its stem needs >= 75; every other model takes 32-64 px


def head_outputs(model: ClassifierModel) -> int:
    classifier = model.get_submodule(model.default_cfg.classifier)
    if isinstance(classifier, nn.Conv2d):
        return classifier.out_channels
    assert isinstance(classifier, nn.Linear), f"{model.default_cfg.classifier} is a {type(classifier).__name__}"
    return classifier.out_features


def meta_logits(model: ClassifierModel, name: str) -> torch.Tensor:
    """Eval-mode logits of a meta-device model on a small input: shapes only, no compute."""
    channels, height, _ = model.default_cfg.input_size
    size = SMALL_INPUT.get(name, min(height, 64))
    return model.eval()(torch.empty(2, channels, size, size, device="meta"))


@pytest.mark.parametrize("text, hidden", [("linear", ()), ("mlp:256", (256,)), ("MLP:512, 128", (512, 128))])
def test_head_spec_parses_the_cli_text(text: str, hidden: tuple[int, ...]):
    spec = HeadSpec.parse(text, dropout=0.4)
    assert spec == HeadSpec(hidden, 0.4) and HeadSpec.parse(spec.describe(), dropout=0.4) == spec


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: HeadSpec.parse("mlp"), "expected 'linear' or 'mlp:WIDTH"),
        (lambda: HeadSpec.parse("mlp:0x"), "expected 'linear' or 'mlp:WIDTH"),
        (lambda: HeadSpec((0,)), "hidden widths must be a tuple of positive ints"),
        (lambda: HeadSpec((256,), dropout=1.0), r"dropout must be in \[0, 1\)"),
        (lambda: HeadSpec(activation="swish"), "activation must be one of"),
    ],
)
def test_head_spec_refuses_bad_values_by_name(make, message: str):
    with pytest.raises(CnnkitError, match=message):
        make()


def test_build_head_layouts_keep_torchvision_indices():
    vgg = build_head(25088, 1000, HeadSpec((4096, 4096), 0.5))
    assert [type(m).__name__ for m in vgg] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert [type(m).__name__ for m in build_head(1280, 10, HeadSpec(dropout=0.0))] == ["Dropout", "Linear"]
    lenet = build_head(400, 10, HeadSpec((120, 84), activation="tanh"))
    assert [type(m).__name__ for m in lenet] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert isinstance(build_head(512, 10, HeadSpec(dropout=0.2), bare=True), nn.Linear)
    assert head_path_of("classifier.6") == "classifier" and head_path_of("fc") == "fc"
    assert head_path_of("head.fc") == "head.fc"


def test_soil_head_on_a_frozen_resnet50_has_the_worked_example_count():
    """worked-examples.md: ResNet-50, frozen backbone, head Linear(2048,256)-ReLU-Dropout-Linear(256,6): 526,086."""
    with torch.device("meta"):
        model = create_model("resnet50", num_classes=6, head=HeadSpec((256,), 0.4))
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(model.head_path + "."))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 526_086
    assert [type(m).__name__ for m in model.fc] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert model.default_cfg.classifier == "fc.3" and model.fc[2].p == 0.4


def test_mlp_head_pre_logits_are_the_hidden_activations():
    model = create_model("resnet18", num_classes=6, head=HeadSpec((32,), 0.4)).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        hidden = torch.relu(model.fc[0](features.mean(dim=(2, 3))))
        torch.testing.assert_close(pre_logits, hidden)
        torch.testing.assert_close(model(x), model.fc[3](pre_logits))


def test_reset_with_a_head_keeps_convnext_norm_and_the_backbone():
    model = create_model("convnext_tiny", num_classes=5)
    norm = model.classifier[0]
    stem = model.features[0][0].weight.clone()
    model.reset_classifier(3, head=HeadSpec((16,), 0.1), generator=torch.Generator().manual_seed(0))
    assert model.classifier[0] is norm and torch.equal(model.features[0][0].weight, stem)
    assert model.default_cfg.classifier == "classifier.5" and head_outputs(model) == 3 == model.num_classes


def test_reset_with_a_generator_is_reproducible():
    heads = []
    for _ in range(2):
        model = create_model("mobilenet_v2", num_classes=4)
        model.reset_classifier(2, head=HeadSpec((8,), 0.2), generator=torch.Generator().manual_seed(3))
        heads.append(model.classifier.state_dict())
    assert all(torch.equal(heads[0][key], heads[1][key]) for key in heads[0])


def test_head_spec_round_trips_through_its_dict_and_refuses_unknown_fields():
    spec = HeadSpec((256,), 0.4)
    assert HeadSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(CnnkitError, match=r"summary.json: unknown fields \['width'\]"):
        HeadSpec.from_dict({"hidden": [8], "width": 3}, source="summary.json")


@pytest.mark.parametrize("name, aux", [("googlenet", ("aux1.fc2", "aux2.fc2")), ("inception_v3", ("AuxLogits.fc",))])
def test_reset_classifier_also_resets_auxiliary_heads(name: str, aux: tuple[str, ...]):
    with torch.device("meta"):
        model = create_model(name, num_classes=10, aux_logits=True)
        model.reset_classifier(3)
    assert [model.get_submodule(path).out_features for path in aux] == [3] * len(aux)


def test_create_model_refuses_a_head_that_is_not_a_spec():
    with pytest.raises(CnnkitError, match="head must be a cnnkit.models.heads.HeadSpec, got str"):
        create_model("resnet18", head="mlp:256")


@pytest.mark.parametrize("name", list_models())
def test_reset_classifier_keeps_num_classes_in_one_place(name: str):
    """model.num_classes, default_cfg.num_classes and the head's outputs agree before and after a reset,
    for the plain reset and for an MLP head; the logits have that many columns."""
    with torch.device("meta"):
        model = create_model(name, num_classes=10)
    assert isinstance(model, ClassifierModel)
    assert model.num_classes == model.default_cfg.num_classes == head_outputs(model) == 10
    model.reset_classifier(3)
    assert model.num_classes == model.default_cfg.num_classes == head_outputs(model) == 3
    assert meta_logits(model, name).shape == (2, 3)
    if model.conv_classifier:  # SqueezeNet, ResNetV2: classes from a 1x1 conv
        with pytest.raises(CnnkitError, match="classifies with a 1x1 conv: it takes no HeadSpec head"):
            model.reset_classifier(4, head=HeadSpec((16,), 0.1))
        return
    model.reset_classifier(4, head=HeadSpec((16,), 0.1))
    assert model.num_classes == model.default_cfg.num_classes == head_outputs(model) == 4
    assert model.default_cfg.classifier.startswith(model.head_path)
    assert meta_logits(model, name).shape == (2, 4)
