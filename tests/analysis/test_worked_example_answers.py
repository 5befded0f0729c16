"""Every row of the worked-examples table computed by cnnkit's analysis and models, as a
known-answer test through cnnkit's own API (the "convolution and pooling by hand" rows are the
engine's: tests/engine/test_worked_examples.py).

The answers are copied from ../shared/reference/worked-examples.md ("Worked examples of the CNN
teaching literature, with their correct answers"), section by section, so these tests run (and can
fail) in a user's checkout where ../shared is absent; `test_copied_answers_match_the_reference`
checks the copy against the file when it is there. Where the commonly printed figure is wrong, the
comment beside the row says what was printed. docs/worked-examples.md walks through the same rows.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from torch import nn
from worked_examples import assert_answers_in_reference

import cnnkit
from cnnkit.analysis.conv_calculator import ConvSpec, conv_report
from cnnkit.analysis.layer_stack import WindowLayer, parse_stack, stack_receptive_fields
from cnnkit.analysis.summary import ModelSummary, summary


def _meta_model(name: str, **options: object) -> nn.Module:
    with torch.device("meta"):
        return cnnkit.create_model(name, **options)


@lru_cache(maxsize=None)
def _zoo_summary(name: str, size: int = 224) -> ModelSummary:
    """Summary of a zoo model on the meta device (shapes only: seconds even for VGG-19)."""
    return summary(_meta_model(name), (3, size, size))


def _params(module: nn.Module, input_size: tuple[int, ...]) -> int:
    return summary(module, input_size).total_params


# --- Output sizes: floor((W - K + 2P) / S) + 1 -------------------------------------------------

OUTPUT_SIZES = (
    # (input, kernel, stride, padding, dilation, answer)
    ("224 K3 P1 S1", 224, 3, 1, 1, 1, 224),
    ("224 K3 P1 S2", 224, 3, 2, 1, 1, 112),
    ("224 K7 P3 S2", 224, 7, 2, 3, 1, 112),
    ("112 then 3x3 max-pool S2 P1", 112, 3, 2, 1, 1, 56),
    ("224 K3 S2 no padding", 224, 3, 2, 0, 1, 111),
    ("64 K5 S2 P1", 64, 5, 2, 1, 1, 31),
    ("32 K5 one layer", 32, 5, 1, 0, 1, 28),
    ("56 K3 dilation 2 P2", 56, 3, 1, 2, 2, 56),
    ("56 K3 dilation 4 P4", 56, 3, 1, 4, 4, 56),
    # 'same' padding with stride 2 gives ceil(W / S), not W / S: ceil(5 / 2) = 3.
    ("'same' K3 S2 on 5", 5, 3, 2, 1, 1, 3),
    # 224 / 16 = 14 patches a side: 14 x 14 = 196 (197 tokens with a class token).
    ("224 with 16x16 patches S16", 224, 16, 16, 0, 1, 14),
)


@pytest.mark.parametrize("case", OUTPUT_SIZES, ids=lambda case: case[0])
def test_output_size(case: tuple) -> None:
    _, size, kernel, stride, padding, dilation, answer = case
    spec = ConvSpec(size=size, kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    assert conv_report(spec).output_size == answer


def _chained_size(size: int, layers: int, kernel: int, padding: int) -> int:
    for _ in range(layers):
        size = conv_report(ConvSpec(size=size, kernel=kernel, padding=padding)).output_size
    return size


def test_stacked_5x5_layers_shrink_the_map() -> None:
    assert _chained_size(32, 5, kernel=5, padding=0) == 12
    assert _chained_size(64, 10, kernel=5, padding=1) == 44  # 20 pixels lost


def lenet_style() -> nn.Sequential:
    """28x28: conv5 16 ch, pool2, conv5 32 ch, pool2, flatten, Linear(512, 120), Linear(120, 10)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(512, 120), nn.ReLU(), nn.Linear(120, 10),
    )


def test_lenet_style_flatten_has_512_features_not_800() -> None:
    # 28 -> 24 -> 12 -> 8 -> 4: 32 x 4 x 4 = 512 (a layer expecting 32 x 5 x 5 = 800 is the classic bug).
    rows = {row.kind: row for row in summary(lenet_style(), (1, 28, 28)).rows}
    assert rows["Flatten"].output_shape == (1, 512)


# --- Parameters ---------------------------------------------------------------------------------

CONV_PARAMS = (
    # (kernel, in, out, without bias, with bias); None where the table gives only one figure.
    (7, 3, 64, 9_408, 9_472),
    (3, 3, 64, 1_728, 1_792),
    (5, 3, 64, 4_800, None),
    (5, 3, 16, None, 1_216),
    (3, 16, 32, None, 4_640),
    (3, 3, 128, None, 3_584),
    (3, 64, 256, None, 147_712),
    (3, 64, 128, None, 73_856),
    (1, 256, 64, None, 16_448),
    (1, 512, 64, None, 32_832),
    (3, 256, 256, None, 590_080),
    (3, 512, 64, None, 294_976),
)


@pytest.mark.parametrize("case", CONV_PARAMS, ids=lambda case: f"{case[0]}x{case[0]} {case[1]}->{case[2]}")
def test_conv_parameters(case: tuple) -> None:
    kernel, c_in, c_out, without_bias, with_bias = case
    report = conv_report(ConvSpec(size=kernel, kernel=kernel, in_channels=c_in, out_channels=c_out))
    if without_bias is not None:
        assert report.params_no_bias == without_bias
    if with_bias is not None:
        assert report.params_with_bias == with_bias


LINEAR_PARAMS = (
    # (in, out, bias, answer). The table calls both Linear(150528, ...) rows "weights only", but
    # 150,529,000 is 150,528 x 1,000 + 1,000 biases; 154,140,672 is 150,528 x 1,024 without.
    ("Linear(150528, 1000) with bias", 150_528, 1_000, True, 150_529_000),
    ("Linear(150528, 1024) weights only", 150_528, 1_024, False, 154_140_672),
    ("VGG-16 first FC Linear(25088, 4096)", 25_088, 4_096, True, 102_764_544),
    ("ResNet-50 head on flattened 2048x7x7", 2048 * 7 * 7, 1_000, True, 100_353_000),
    # A fully connected map from 224x224x3 to 112x112x64: about 121 billion weights.
    ("dense 224x224x3 -> 112x112x64", 150_528, 802_816, False, 120_846_286_848),
)


@pytest.mark.parametrize("case", LINEAR_PARAMS, ids=lambda case: case[0])
def test_linear_parameters(case: tuple) -> None:
    _, n_in, n_out, bias, answer = case
    with torch.device("meta"):
        layer = nn.Linear(n_in, n_out, bias=bias)
    assert _params(layer, (n_in,)) == answer


def test_vgg16_first_fc_is_74_percent_of_the_network() -> None:
    result = _zoo_summary("vgg16")
    first_fc = next(row for row in result.rows if row.kind == "Linear")
    assert (first_fc.params, result.total_params) == (102_764_544, 138_357_544)
    assert round(100 * first_fc.params / result.total_params, 1) == 74.3


def test_resnet50_global_average_pooling_removes_98_percent_of_the_head() -> None:
    head = {row.name: row for row in _zoo_summary("resnet50").rows}["fc"]
    assert head.params == 2_049_000
    assert round(1 - head.params / 100_353_000, 2) == 0.98


def test_lenet_style_parameters() -> None:
    rows = summary(lenet_style(), (1, 28, 28)).rows
    assert [row.params for row in rows if row.params] == [416, 12_832, 61_560, 1_210]
    assert sum(row.params for row in rows) == 76_018


def test_cifar_net_parameters() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(64, 128, 3, padding=1), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8192, 10),
    )
    rows = summary(net, (3, 32, 32)).rows
    assert [row.params for row in rows if row.params] == [1_792, 73_856, 81_930]
    assert sum(row.params for row in rows) == 157_578


def printed_mnist_bn_cnn() -> nn.Sequential:
    """The MNIST BN-CNN as commonly printed: conv 32-64-128 (3x3, BN, pool after each), FC 512-128-10."""
    layers: list[nn.Module] = []
    for c_in, c_out in ((1, 32), (32, 64), (64, 128)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.25), nn.Linear(512, 128), nn.ReLU(),
        nn.Dropout(0.25), nn.Linear(128, 10),
    )


MNIST_BN_CNN_PARAMS = 160_074  # printed: 138,442, which that code does not have


def test_printed_mnist_bn_cnn_has_160_074_parameters() -> None:
    assert _params(printed_mnist_bn_cnn(), (1, 28, 28)) == MNIST_BN_CNN_PARAMS


def test_zoo_mnist_cnn_is_the_printed_code() -> None:
    assert _params(_meta_model("mnist_cnn"), (1, 28, 28)) == MNIST_BN_CNN_PARAMS


def test_resnet50_frozen_backbone_with_mlp_head_trains_526_086() -> None:
    model = _meta_model("resnet50", num_classes=6)
    for param in model.parameters():
        param.requires_grad_(False)
    with torch.device("meta"):
        model.fc = nn.Sequential(nn.Linear(2048, 256), nn.ReLU(), nn.Dropout(0.4), nn.Linear(256, 6))
    assert summary(model).trainable_params == 526_086


def test_inception_v3_with_its_auxiliary_head() -> None:
    model = _meta_model("inception_v3", aux_logits=True)
    assert sum(p.numel() for p in model.parameters()) == 27_161_264


# --- Depthwise-separable and bottleneck arithmetic ------------------------------------------------

SEPARABLE = (
    # (in, out, standard, separable = depthwise + pointwise, "x fewer" to one decimal)
    (64, 128, 73_728, 576 + 8_192, 8.4),
    (256, 256, 589_824, 2_304 + 65_536, 8.7),
)


@pytest.mark.parametrize("case", SEPARABLE, ids=lambda case: f"3x3 {case[0]}->{case[1]}")
def test_separable_parameters(case: tuple) -> None:
    c_in, c_out, standard, separable, fewer = case
    report = conv_report(ConvSpec(size=3, kernel=3, in_channels=c_in, out_channels=c_out))
    assert (report.params_no_bias, report.separable_params) == (standard, separable)
    assert round(1 / report.separable_ratio, 1) == fewer


def test_separable_with_biases_counts_the_pointwise_bias() -> None:
    # The table's 68,096 = 67,840 + 256: one bias vector, on the pointwise conv (a BN follows the
    # depthwise conv in MobileNet, which makes its bias redundant).
    standard = nn.Conv2d(256, 256, 3)
    separable = nn.Sequential(nn.Conv2d(256, 256, 3, groups=256, bias=False), nn.Conv2d(256, 256, 1))
    assert (_params(standard, (256, 3, 3)), _params(separable, (256, 3, 3))) == (590_080, 68_096)


def test_separable_ratio_is_one_over_c_out_plus_one_over_k_squared() -> None:
    report = conv_report(ConvSpec(size=3, kernel=3, in_channels=3, out_channels=4))
    assert report.separable_ratio == pytest.approx(1 / 4 + 1 / 9, rel=1e-12)


def test_mobilenet_v1_macs_against_the_same_network_with_dense_convs() -> None:
    # Howard et al. 2017, Table 4 ("Conv MobileNet"): each depthwise + pointwise pair becomes one
    # dense 3x3 conv C_in -> C_out on the same output grid, i.e. 9x the pointwise conv's MACs.
    model = _meta_model("mobilenetv1_100")
    depthwise = {name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1}
    convs = [row for row in summary(model).rows if row.kind == "Conv2d"]
    pairs = [(row, convs[i + 1]) for i, row in enumerate(convs) if row.name in depthwise]
    separable = _zoo_summary("mobilenetv1_100").total_macs
    dense = separable + sum(9 * pointwise.macs - dw.macs - pointwise.macs for dw, pointwise in pairs)
    # "About" 569 M vs 4,866 M: cnnkit counts 568.74 M and 4,867.29 M (4,866.27 M without the
    # classifier's 1.02 M), so the dense figure is held to 0.05%.
    assert (len(pairs), round(separable / 1e6)) == (13, 569)
    assert dense == pytest.approx(4_866e6, rel=5e-4)
    assert round(dense / separable, 1) == 8.6


def _weights(kernel: int, c_in: int, c_out: int, *, bias: bool = False) -> int:
    report = conv_report(ConvSpec(size=kernel, kernel=kernel, in_channels=c_in, out_channels=c_out))
    return report.params_with_bias if bias else report.params_no_bias


def test_resnet50_bottleneck_against_one_and_two_dense_3x3() -> None:
    parts = [_weights(1, 256, 64), _weights(3, 64, 64), _weights(1, 64, 256)]
    assert parts == [16_384, 36_864, 16_384] and sum(parts) == 69_632
    assert round(_weights(3, 256, 256) / sum(parts), 1) == 8.5
    with_bias = _weights(1, 256, 64, bias=True) + _weights(3, 64, 64, bias=True) + _weights(1, 64, 256, bias=True)
    two_dense = 2 * _weights(3, 256, 256, bias=True)
    assert (with_bias, two_dense, round(two_dense / with_bias, 1)) == (70_016, 1_180_160, 16.9)


def test_bottleneck_receptive_field_is_3_not_that_of_two_3x3() -> None:
    assert stack_receptive_fields(parse_stack("k1,k3,k1"))[-1].rf == 3
    assert stack_receptive_fields(parse_stack("k3,k3"))[-1].rf == 5


@pytest.mark.parametrize("channels", [16, 64])
def test_stacked_3x3_against_one_large_kernel(channels: int) -> None:
    two, five = 2 * _weights(3, channels, channels), _weights(5, channels, channels)
    three, seven = 3 * _weights(3, channels, channels), _weights(7, channels, channels)
    assert (two, five, three, seven) == (18 * channels**2, 25 * channels**2, 27 * channels**2, 49 * channels**2)
    assert (round(100 * (1 - two / five)), round(100 * (1 - three / seven))) == (28, 45)


def test_macs_per_output_location_full_width_against_bottleneck_width() -> None:
    # A 3x3 window over one output location (3x3 input, no padding): MACs = weights.
    full = conv_report(ConvSpec(size=3, kernel=3, in_channels=256, out_channels=256)).macs
    narrow = conv_report(ConvSpec(size=3, kernel=3, in_channels=256, out_channels=64)).macs
    assert (full, narrow, full // narrow) == (589_824, 147_456, 4)


def test_halving_height_and_width_gives_4x_fewer_macs() -> None:
    big = conv_report(ConvSpec(size=56, kernel=3, padding=1, in_channels=64, out_channels=64)).macs
    small = conv_report(ConvSpec(size=28, kernel=3, padding=1, in_channels=64, out_channels=64)).macs
    assert big == 4 * small


# --- Receptive fields ---------------------------------------------------------------------------

STACK_RFS = (
    # (stack, receptive field after each layer)
    ("stacked 3x3 stride 1", ",".join(["k3"] * 50), {1: 3, 2: 5, 3: 7, 5: 11, 7: 15, 10: 21, 50: 101}),
    ("3x3, 3x3 stride 2, 3x3", "k3,k3s2,k3", {3: 9}),
    ("dilations 1, 2, 4, 8", "k3,k3d2,k3d4,k3d8", {1: 3, 2: 7, 3: 15, 4: 31}),
    # Printed elsewhere: 7, 15, 19, 23, 31, 39, 55, 71, 103, 135, 199 (the pool's jump of 2 taken as 1).
    ("ResNet-like stack", "k7s2,k3s2,k3,k3,k3s2,k3,k3s2,k3,k3s2,k3,k3s2",
     dict(enumerate([7, 11, 19, 27, 35, 51, 67, 99, 131, 195, 259], start=1))),
)


@pytest.mark.parametrize("case", STACK_RFS, ids=lambda case: case[0])
def test_stack_receptive_field(case: tuple) -> None:
    _, stack, answers = case
    rows = stack_receptive_fields(parse_stack(stack))
    assert {depth: rows[depth - 1].rf for depth in answers} == answers


def test_stack_parser_reads_kernel_stride_and_dilation() -> None:
    assert parse_stack("k7s2, K3d4 ,k1") == (WindowLayer(7, 2, 1), WindowLayer(3, 1, 4), WindowLayer(1, 1, 1))


def _last_rf(name: str, prefix: str) -> int:
    rows = [row for row in _zoo_summary(name).rows if row.name.startswith(prefix)]
    return rows[-1].rf  # type: ignore[return-value]


@pytest.mark.parametrize("stage, answer", [("layer1.", 35), ("layer2.", 91), ("layer3.", 267), ("layer4.", 427)])
def test_resnet50_stage_receptive_fields(stage: str, answer: int) -> None:
    assert _last_rf("resnet50", stage) == answer


def test_vgg19_sees_far_more_than_101_pixels() -> None:
    # Printed elsewhere: "VGG-19 sees only 101 pixels".
    rows = _zoo_summary("vgg19").rows
    last_conv = [row for row in rows if row.kind == "Conv2d"][-1]
    pool5 = [row for row in rows if row.kind == "MaxPool2d"][-1]
    assert (last_conv.rf, pool5.rf) == (252, 268)


def test_vgg16_after_pool5() -> None:
    assert [row for row in _zoo_summary("vgg16").rows if row.kind == "MaxPool2d"][-1].rf == 212


# --- Counts and shapes of named networks ------------------------------------------------------------


def _count(model: nn.Module, kind: type | str) -> int:
    if isinstance(kind, str):
        return sum(type(module).__name__ == kind for module in model.modules())
    return sum(isinstance(module, kind) for module in model.modules())


def test_resnet50_depth_is_49_main_path_convs_plus_one_fc() -> None:
    model = _meta_model("resnet50")
    shortcuts = sum(isinstance(m, nn.Conv2d) and "downsample" in n for n, m in model.named_modules())
    convs = _count(model, nn.Conv2d)
    assert (convs, shortcuts, convs - shortcuts + _count(model, nn.Linear)) == (53, 4, 50)


def test_alexnet_has_5_convs_and_3_fcs() -> None:
    model = _meta_model("alexnet")
    assert (_count(model, nn.Conv2d), _count(model, nn.Linear)) == (5, 3)


def test_mobilenet_v2_blocks_and_last_map_size() -> None:
    assert _count(_meta_model("mobilenet_v2"), "InvertedResidual") == 17
    for size, grid in ((112, 4), (224, 7)):
        maps = [row.output_shape for row in _zoo_summary("mobilenet_v2", size).rows if row.output_shape[1:2] == (320,)]
        assert maps[-1][2:] == (grid, grid)


NAMED_MACS = (
    # (model, input size, the "GFLOPs" usually printed, which are multiply-accumulates)
    ("resnet50", 224, 4.09),
    ("vgg19", 224, 19.6),
    ("inception_v3", 299, 5.71),
    ("densenet161", 224, 7.73),
    ("efficientnet_b0", 224, 0.39),
)


@pytest.mark.parametrize("case", NAMED_MACS, ids=lambda case: case[0])
def test_printed_gflops_are_macs(case: tuple) -> None:
    name, size, printed = case
    result = _zoo_summary(name, size)
    digits = 3 - len(str(int(printed)))  # the printed figures have three significant digits
    assert round(result.total_macs / 1e9, digits) == printed
    assert result.flops == 2 * result.total_macs


def test_squeeze_excitation_costs_parameters_not_macs() -> None:
    plain, se = _zoo_summary("resnet50"), _zoo_summary("seresnet50")
    assert round(100 * (se.total_macs / plain.total_macs - 1), 2) == 0.06
    assert round((se.total_params - plain.total_params) / 1e6, 2) == 2.53


# --- The copy above against the reference file ----------------------------------------------------

ANSWERS_IN_REFERENCE = (
    "224 / 112 / 112 / 56", "28 / 12", "44 (20 pixels lost)", "512 features", "9,408 without bias, 9,472 with",
    "16,448 / 32,832", "150,529,000 / 154,140,672", "102,764,544", "100,353,000 vs 2,049,000",
    "120,846,286,848", "76,018", "157,578", "160,074", "526,086", "27,161,264", "8,768: 8.4x",
    "569 M vs 4,866 M (8.6x)", "70,016 vs 1,180,160 (16.9x)", "3, 5, 7, 11, 15, 21, 101", "3, 7, 15, 31",
    "7, 11, 19, 27, 35, 51, 67, 99, 131, 195, 259", "35 / 91 / 267 / 427", "252 / 268", "17 inverted-residual",
    "ResNet-50 4.09, VGG-19 19.6, Inception-v3 5.71, DenseNet-161 7.73, EfficientNet-B0 0.39",
    "+0.06% MACs, +2.53 M parameters",
)


def test_copied_answers_match_the_reference() -> None:
    assert_answers_in_reference(ANSWERS_IN_REFERENCE)
