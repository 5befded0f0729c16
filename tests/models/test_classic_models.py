"""The classic zoo: parameter counts against published figures, shapes, heads and overrides.

Oracle for counts: ../shared/reference/zoo.json (published/peer figures), committed as
tests/models/reference/published.json. Structural checks run on
the meta device (shapes without arithmetic) so full-size models cost no compute; a few small
models also run for real on the CPU.
"""

from __future__ import annotations


import pytest
import torch
from torch import nn

import cnnkit
from cnnkit.errors import CnnkitError
from cnnkit.layers.bottleneck import Bottleneck
from cnnkit.layers.norm import make_norm_layer
from cnnkit.layers.residual import BasicBlock
from cnnkit.models.googlenet import GoogLeNetOutputs
from cnnkit.models.inception_v3 import InceptionOutputs
from cnnkit.models.lenet import lenet5
from models.reference.published import published_figures

CLASSIC = (
    "lenet5 alexnet vgg11 vgg16 vgg19 vgg16_bn googlenet inception_v3 resnet18 resnet34 resnet50 resnet101 "
    "resnet152 resnext50_32x4d wide_resnet50_2 densenet121 densenet161 seresnet50 resnet50d"
).split()
# (model, input side, feature channels, feature side) for the meta-device shape checks.
SHAPES = [
    ("lenet5", 32, 16, 5),
    ("alexnet", 224, 256, 6),
    ("vgg16_bn", 224, 512, 7),
    ("googlenet", 224, 1024, 7),
    ("inception_v3", 299, 2048, 8),
    ("resnet18", 224, 512, 7),
    ("resnet50", 224, 2048, 7),
    ("resnext50_32x4d", 224, 2048, 7),
    ("wide_resnet50_2", 224, 2048, 7),
    ("densenet121", 224, 1024, 7),
    ("densenet161", 224, 2208, 7),
    ("seresnet50", 224, 2048, 7),
    ("resnet50d", 224, 2048, 7),
    ("compact_cnn", 32, 256, 4),
    ("mnist_cnn", 28, 128, 3),
]


def _zoo_figures() -> dict[str, dict]:
    return published_figures()


def _meta_model(name: str, **kwargs: object) -> nn.Module:
    with torch.device("meta"):
        return cnnkit.create_model(name, **kwargs)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", CLASSIC)
def test_parameter_count_equals_published_figure(name: str) -> None:
    figure = _zoo_figures()[name]
    model = _meta_model(name, num_classes=10, in_chans=1) if name == "lenet5" else _meta_model(name)
    assert _count(model) == figure["params"], f"{name} ({figure['source']})"


def test_lenet5_builder_defaults_are_ten_classes_on_one_32x32_channel() -> None:
    model = lenet5()
    assert model.default_cfg.input_size == (1, 32, 32) and model.default_cfg.num_classes == 10
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)  # MNIST without padding


@pytest.mark.parametrize(("name", "side", "channels", "grid"), SHAPES, ids=[s[0] for s in SHAPES])
def test_features_head_and_default_cfg_paths_agree(name: str, side: int, channels: int, grid: int) -> None:
    in_chans = 1 if name in {"lenet5", "compact_cnn", "mnist_cnn"} else 3
    model = _meta_model(name, num_classes=7, in_chans=in_chans).eval()
    cfg = model.default_cfg
    assert cfg.input_size == (in_chans, side, side) and cfg.num_classes == 7
    first_conv, classifier = model.get_submodule(cfg.first_conv), model.get_submodule(cfg.classifier)
    assert isinstance(first_conv, nn.Conv2d) and first_conv.in_channels == in_chans
    assert isinstance(classifier, nn.Linear) and classifier.out_features == 7
    x = torch.empty(2, in_chans, side, side, device="meta")
    features = model.forward_features(x)
    assert features.shape == (2, channels, grid, grid)
    assert model.forward_head(features, pre_logits=True).shape == (2, classifier.in_features)
    assert model(x).shape == (2, 7)


@pytest.mark.parametrize(
    ("name", "side"), [("resnet18", 64), ("densenet121", 64), ("googlenet", 64), ("inception_v3", 75)]
)
def test_small_models_run_and_train_on_cpu(name: str, side: int) -> None:
    torch.manual_seed(0)
    model = cnnkit.create_model(name, num_classes=5)
    x = torch.randn(2, 3, side, side)
    model.eval()
    with torch.no_grad():
        logits = model(x)
        torch.testing.assert_close(logits, model.forward_head(model.forward_features(x)))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    model.train()
    model(x).logsumexp(1).sum().backward()
    assert model.get_submodule(model.default_cfg.first_conv).weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet50d", "seresnet50"])
def test_cifar_stem_keeps_32x32_inputs_at_stride_8(name: str) -> None:
    model = _meta_model(name, num_classes=10, stem="cifar")
    assert model.default_cfg.input_size == (3, 32, 32) and model.default_cfg.first_conv == "conv1"
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    features = model.forward_features(torch.empty(2, 3, 32, 32, device="meta"))
    assert features.shape[-2:] == (4, 4)
    assert model(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)


def test_cifar_resnet18_runs_on_28x28_single_channel() -> None:
    model = cnnkit.create_model("resnet18", num_classes=10, in_chans=1, stem="cifar").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_googlenet_aux_heads_only_in_training() -> None:
    model = cnnkit.create_model("googlenet", num_classes=6, aux_logits=True).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, GoogLeNetOutputs)
    assert [t.shape for t in out] == [(2, 6)] * 3
    assert [name for name, _ in model.named_children() if name.startswith("aux")] == ["aux1", "aux2"]
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 6)
    assert not hasattr(cnnkit.create_model("googlenet"), "aux1")


def test_inception_v3_aux_head_only_in_training() -> None:
    default = _meta_model("inception_v3")
    assert not hasattr(default, "AuxLogits")
    model = _meta_model("inception_v3", num_classes=4, aux_logits=True).train()
    out = model(torch.empty(2, 3, 299, 299, device="meta"))
    assert isinstance(out, InceptionOutputs) and out.logits.shape == out.aux_logits.shape == (2, 4)
    assert model.eval()(torch.empty(2, 3, 299, 299, device="meta")).shape == (2, 4)


def test_transform_input_rescales_imagenet_normalised_input() -> None:
    torch.manual_seed(0)
    plain = cnnkit.create_model("googlenet", num_classes=3).eval()
    rescaling = cnnkit.create_model("googlenet", num_classes=3, transform_input=True).eval()
    rescaling.load_state_dict(plain.state_dict())
    pixels = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(rescaling((pixels - mean) / std), plain((pixels - 0.5) / 0.5))


def test_zero_init_residual_zeroes_every_last_norm() -> None:
    model = cnnkit.create_model("resnet18", zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8 and all(b.bn2.weight.abs().sum() == 0 for b in blocks)
    assert all(b.bn1.weight.abs().sum() > 0 for b in blocks)


def test_torchvision_init_kaiming_fan_out_and_unit_norms() -> None:
    torch.manual_seed(0)
    model = cnnkit.create_model("resnet18")
    conv = model.layer4[0].conv2  # fan_out = 512 * 9: std = sqrt(2 / fan_out)
    expected = (2.0 / (conv.out_channels * 9)) ** 0.5
    assert abs(conv.weight.std().item() / expected - 1) < 0.02
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "vgg11", "compact_cnn"])
def test_group_norm_override(name: str) -> None:
    model = _meta_model(name, num_classes=3, norm_layer=make_norm_layer("group", num_groups=16))
    kinds = {type(m) for m in model.modules()}
    assert nn.GroupNorm in kinds and nn.BatchNorm2d not in kinds


def test_seresnet50_squeezes_to_a_sixteenth_and_resnet50d_pools_its_shortcut() -> None:
    se = _meta_model("seresnet50").layer1[0].se
    assert (se.fc1.in_channels, se.fc1.out_channels) == (256, 16)
    resnet50d = _meta_model("resnet50d")
    assert isinstance(resnet50d.layer2[0].downsample[0], nn.AvgPool2d)
    assert [resnet50d.conv1[i].out_channels for i in (0, 3, 6)] == [32, 32, 64]
    assert isinstance(_meta_model("resnext50_32x4d").layer1[0], Bottleneck)


def test_mnist_cnn_is_the_printed_code_with_its_true_count_and_runs_on_mnist_shape() -> None:
    """worked-examples.md: conv 32-64-128 with BN, pool after each, FC 512-128-10 has 160,074 parameters."""
    model = cnnkit.create_model("mnist_cnn", num_classes=10, in_chans=1).eval()
    assert _count(model) == 160_074
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.out_channels, c.bias is not None) for c in convs] == [(32, True), (64, True), (128, True)]
    assert [(f.in_features, f.out_features) for f in linears] == [(512, 128), (128, 10)]
    with torch.no_grad():
        assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)


def test_compact_cnn_accepts_any_size_and_channels() -> None:
    model = cnnkit.create_model("compact_cnn", num_classes=4, in_chans=3, drop_rate=0.0).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 128, 256]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 48, 40)).shape == (2, 4)


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "densenet121", "googlenet", "lenet5", "compact_cnn"])
def test_unknown_override_is_named_in_the_error(name: str) -> None:
    with pytest.raises(CnnkitError, match="no option no_such_option; its options: "):
        cnnkit.create_model(name, no_such_option=1)


def test_bad_stem_is_a_clear_error() -> None:
    with pytest.raises(CnnkitError, match="stem must be one of"):
        cnnkit.create_model("resnet18", stem="tiny")


def test_all_cnn_c_follows_table_2_of_springenberg_2015() -> None:
    """Convs 3-96, 96-96, 96-96/2, 96-192, 192-192, 192-192/2, 192-192 valid, 1x1 192-192, 1x1 192-10,
    with biases: 2,688 + 2 x 83,040 + 166,080 + 3 x 331,968 + 37,056 + 1,930 = 1,369,738 parameters."""
    model = cnnkit.create_model("all_cnn_c").eval()
    assert _count(model) == 1_369_738
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Linear)) for m in model.modules())
    strides = [m.stride[0] for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert strides == [1, 1, 2, 1, 1, 2, 1, 1, 1]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 192, 6, 6)
        logits = model(x)
        expected = torch.relu(model.classifier[0](features)).mean(dim=(2, 3))
    torch.testing.assert_close(logits, expected)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("googlenet", {"transform_input": True, "in_chans": 1}, "transform_input needs 3 input channels"),
        ("inception_v3", {"transform_input": True, "in_chans": 4}, "transform_input needs 3 input channels"),
        ("efficientnet_b0", {"stochastic_depth_prob": 1.05}, r"stochastic_depth_prob must be in \[0, 1\], got 1.05"),
        ("efficientnet_v2_s", {"stochastic_depth_prob": 2.0}, r"stochastic_depth_prob must be in \[0, 1\], got 2.0"),
        ("mobilenetv1_100", {"width_mult": 0.0}, "width_mult must be > 0, got 0.0"),
        ("mobilenet_v2", {"width_mult": -1.0}, "width_mult must be > 0, got -1.0"),
        ("mobilenet_v3_small", {"width_mult": 0}, "width_mult must be > 0, got 0"),
    ],
)
def test_an_option_value_the_builder_refuses_is_a_cnnkit_error_naming_it(name: str, options: dict, message: str):
    """They were bare ValueErrors (a traceback from `--model-opt`); efficientnet_b0 took 1.05 (its
    blocks get at most 15/16 of it) and named the block's share (1.125) for 2.0, not the option;
    a MobileNet built every layer at the 8-channel minimum for width_mult <= 0."""
    with pytest.raises(CnnkitError, match=f"model '{name}': {message}"), torch.device("meta"):
        cnnkit.create_model(name, **options)
