"""Receptive field and jump: known answers for stacks, dilations, stems, merges and global ops."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
import torch
from torch import nn

import cnnkit
from cnnkit.analysis.summary import summary
from cnnkit.engine import output_size


def conv_stack(strides: list[int], dilations: list[int] | None = None, *, kernel: int = 3) -> nn.Sequential:
    dilations = dilations or [1] * len(strides)
    return nn.Sequential(
        *(
            nn.Conv2d(4 if i else 3, 4, kernel, stride, padding=dilation * (kernel // 2), dilation=dilation)
            for i, (stride, dilation) in enumerate(zip(strides, dilations))
        )
    )


def test_three_stacked_3x3_convs_see_7_pixels() -> None:
    rows = summary(conv_stack([1, 1, 1]), (3, 32, 32)).rows
    assert [row.rf for row in rows] == [3, 5, 7]
    assert [row.jump for row in rows] == [1, 1, 1]


def test_stride_2_in_the_second_layer_gives_9() -> None:
    rows = summary(conv_stack([1, 2, 1]), (3, 32, 32)).rows
    assert [row.rf for row in rows] == [3, 5, 9]
    assert [row.jump for row in rows] == [1, 2, 2]


def test_dilations_1_2_4_8_give_3_7_15_31() -> None:
    rows = summary(conv_stack([1, 1, 1, 1], [1, 2, 4, 8]), (3, 64, 64)).rows
    assert [row.rf for row in rows] == [3, 7, 15, 31]


def test_resnet_stem_as_sequential_gives_7_then_11() -> None:
    stem = nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
    )
    rows = summary(stem).rows
    assert [(row.kind, row.rf, row.jump) for row in rows] == [
        ("Conv2d", 7, 2),
        ("BatchNorm2d", 7, 2),
        ("ReLU", 7, 2),
        ("MaxPool2d", 11, 4),
    ]


def test_zoo_resnet50_stem_gives_7_then_11() -> None:
    if "resnet50" not in cnnkit.list_models():
        pytest.skip("resnet50 is not registered in the zoo yet")
    rows = {row.name: row for row in summary(cnnkit.create_model("resnet50")).rows}
    assert (rows["conv1"].rf, rows["maxpool"].rf) == (7, 11)
    assert (rows["conv1"].jump, rows["maxpool"].jump) == (2, 4)


class Residual(nn.Module):
    """out = deep(x) + shallow(x): two branches with different receptive fields."""

    def __init__(self, *, deep_first: bool) -> None:
        super().__init__()
        deep = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        shallow = nn.Conv2d(4, 4, 1)
        self.a, self.b = (deep, shallow) if deep_first else (shallow, deep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


@pytest.mark.parametrize("deep_first", [True, False])
def test_residual_output_rf_is_the_max_of_its_branches(deep_first: bool) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Residual(deep_first=deep_first))
    result = summary(model, (3, 16, 16))
    # Stem 3; deep branch 3 + 2 + 2 = 7; shallow (1x1) branch 3: the sum sees 7.
    assert result.output_rf_hw == (7, 7)


class Concat(nn.Module):
    """Inception-style: 1x1, 3x3 and 5x5 branches concatenated along channels."""

    def __init__(self) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(3, 2, k, padding=k // 2) for k in (1, 5, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def test_concat_output_rf_is_the_max_of_its_branches() -> None:
    result = summary(nn.Sequential(Concat(), nn.Conv2d(6, 6, 3, padding=1)), (3, 16, 16))
    assert [row.rf for row in result.rows] == [1, 5, 3, 7]


def test_global_pool_acts_as_a_window_over_the_whole_map() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    rows = summary(model, (3, 16, 16)).rows
    # conv: r=3, j=2 on an 8x8 grid; global pool: r = 3 + (8 - 1) * 2 = 17 >= 16 input pixels.
    assert [row.rf for row in rows] == [3, 17, 17, 17]


def test_flatten_then_linear_covers_the_whole_map() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 8 * 8, 5))
    rows = summary(model, (3, 8, 8)).rows
    # Flatten only reshapes (r stays 3); the linear layer mixes all 8x8 positions: 3 + 7 = 10.
    assert [row.rf for row in rows] == [3, 3, 10]


class ChannelsLastMlp(nn.Module):
    """ConvNeXt-style: permute to (N, H, W, C), a Linear over channels, permute back."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def test_channel_mixing_linear_keeps_the_receptive_field() -> None:
    result = summary(nn.Sequential(ChannelsLastMlp(), nn.Conv2d(4, 4, 3, padding=1)), (3, 16, 16))
    assert [row.rf for row in result.rows] == [3, 3, 5]


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc(mean over H, W)): every output pixel depends on the whole map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


def test_squeeze_excitation_widens_the_rf_to_the_whole_input_but_keeps_the_grid() -> None:
    result = summary(nn.Sequential(SqueezeExcite(), nn.Conv2d(4, 4, 3, padding=1)), (3, 16, 16))
    # mean: 3 + (16 - 1) * 1 = 18; the next 3x3 conv on the unchanged 16x16 grid (jump 1) adds 2.
    assert result.output_rf_hw == (20, 20)
    assert result.rows[-1].jump == 1


def test_asymmetric_kernels_are_tracked_per_axis() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, (1, 7), padding=(0, 3)), nn.Conv2d(4, 4, (7, 1), stride=(2, 1), padding=(3, 0))
    )
    rows = summary(model, (3, 32, 32)).rows
    assert [(row.rf_hw, row.jump_hw) for row in rows] == [((1, 7), (1, 1)), ((7, 7), (2, 1))]


def test_zoo_vgg16_pool5_matches_the_published_212() -> None:
    # Araujo et al. 2019, "Computing Receptive Fields of CNNs", Table 1: VGG-16 r = 212.
    if "vgg16" not in cnnkit.list_models():
        pytest.skip("vgg16 is not registered in the zoo yet")
    with torch.device("meta"):
        model = cnnkit.create_model("vgg16")
    rows = {row.name: row for row in summary(model).rows}
    assert (rows["features.30"].kind, rows["features.30"].rf, rows["features.30"].jump) == ("MaxPool2d", 212, 32)


def test_adaptive_pool_to_a_divisor_is_a_pool_of_kernel_and_stride_i_over_o() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(4))
    rows = summary(model, (3, 8, 8)).rows
    # 8 -> 4 is a 2x2 pool with stride 2: r = 3 + (2 - 1) * 1 = 4, j = 2.
    assert (rows[1].rf, rows[1].jump) == (4, 2)



def gradient_support(model: nn.Module, size: int, unit: tuple[int, int]) -> tuple[int, int]:
    """Height and width of the input region whose pixels reach output `unit`'s gradient (positive
    weights and inputs, so nothing cancels): the receptive field measured, not computed."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(0.1, 1.0)
    image = torch.rand(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    model.double()(image)[0, :, unit[0], unit[1]].sum().backward()
    rows, cols = (image.grad[0].sum(0) != 0).nonzero().unbind(1)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize(("size_in", "size_out"), [(7, 3), (6, 4), (9, 2), (1, 7)])
def test_adaptive_pool_rf_is_its_widest_window(size_in: int, size_out: int) -> None:
    """Uneven windows: 7 -> 3 pools 3 cells at most, 6 -> 4 pools 2, 9 -> 2 pools 5, 1 -> 7 one
    (ceil(I / O) + 1 overstated 7 -> 3, 6 -> 4, 9 -> 2 and 1 -> 7 by one cell)."""
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(size_out))
    widest = max(gradient_support(model, size_in + 2, (unit, unit))[0] for unit in range(size_out))
    rf = summary(model, (3, size_in + 2, size_in + 2)).rows[1].rf
    assert rf == widest


@pytest.mark.parametrize("size", [5, 6, 7])
def test_a_ceil_mode_pool_keeps_its_partial_window_in_the_grid(size: int) -> None:
    """AvgPool2d(3, 2, 1, ceil_mode=True) after a valid 3x3 conv: the analysed grid is the engine's
    ceil-mode output size (6 cells -> 4, where floor mode gives 3) and the receptive field is the
    widest window measured through the gradient."""
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AvgPool2d(3, 2, 1, ceil_mode=True))
    row = summary(model, (3, size + 2, size + 2)).rows[1]
    cells = output_size(size, 3, 2, 2, ceil_mode=True)
    assert row.output_shape[-2:] == (cells, cells) and (size != 6 or cells == 4)
    assert row.rf == widest_gradient_support(model, size + 2)


class InPlaceResidual(nn.Module):
    """ResNet style: out = shallow(x); out += deep(x), the merge done in place."""

    def __init__(self) -> None:
        super().__init__()
        self.shallow = nn.Conv2d(3, 4, 1)
        self.deep = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shallow(x)
        out += self.deep(x)
        return torch.relu_(out)


def test_in_place_merge_takes_the_max_too() -> None:
    assert summary(InPlaceResidual(), (3, 16, 16)).output_rf_hw == (5, 5)


class ChannelShuffle(nn.Module):
    """ShuffleNet's shuffle: a 5-D view, a transpose and a view back; no spatial mixing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


def test_channel_shuffle_keeps_the_spatial_axes() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), ChannelShuffle(), nn.Conv2d(4, 4, 3, padding=1))
    assert [row.rf for row in summary(model, (3, 16, 16)).rows] == [3, 3, 5]


def widest_gradient_support(model: nn.Module, size: int) -> int:
    """The receptive field measured: the widest input span (height) that reaches any one output unit."""
    with torch.no_grad():
        grid = model(torch.zeros(1, 3, size, size)).shape[-2:]
    return max(gradient_support(model, size, (u, v))[0] for u in range(grid[0]) for v in range(grid[1]))


class ResidualPair(nn.Module):
    """out = 1x1 conv(x) + two padded 3x3 convs(x): a merge after an enlarging pool."""

    def __init__(self) -> None:
        super().__init__()
        self.shallow = nn.Conv2d(2, 2, 1)
        self.deep = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shallow(x) + self.deep(x)


UPSAMPLING_STACKS = {
    # Valid convs before the pool, so the measured support is not clipped by the image border.
    "2->7 then 3x3": lambda: nn.Sequential(nn.Conv2d(3, 2, 3, stride=4), nn.AdaptiveAvgPool2d(7), nn.Conv2d(2, 2, 3)),
    "3->7 then 2x2 s2": lambda: nn.Sequential(
        nn.Conv2d(3, 2, 3, stride=3), nn.AdaptiveMaxPool2d(7), nn.Conv2d(2, 2, 2, stride=2)
    ),
    "2->5 then dilated 3x3": lambda: nn.Sequential(
        nn.Conv2d(3, 2, 2, stride=5), nn.AdaptiveAvgPool2d(5), nn.Conv2d(2, 2, 3, dilation=2)
    ),
    "3->8 then padded residual": lambda: nn.Sequential(
        nn.Conv2d(3, 2, 3, stride=3), nn.AdaptiveAvgPool2d(8), ResidualPair()
    ),
    "2->3->7 then max pool": lambda: nn.Sequential(
        nn.Conv2d(3, 2, 3, stride=4), nn.AdaptiveAvgPool2d(3), nn.AdaptiveAvgPool2d(7), nn.MaxPool2d(3, 2)
    ),
    "6->4 uneven then 2x2": lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(4), nn.Conv2d(2, 2, 2)),
    "1->7 then flatten + linear": lambda: nn.Sequential(
        nn.Conv2d(3, 2, 5, stride=2),
        nn.AdaptiveAvgPool2d(7),
        nn.Flatten(),
        nn.Linear(2 * 7 * 7, 1),
        nn.Unflatten(1, (1, 1, 1)),
    ),
    "2->7 then global pool": lambda: nn.Sequential(
        nn.Conv2d(3, 2, 3, stride=4), nn.AdaptiveAvgPool2d(7), nn.Conv2d(2, 2, 3), nn.AdaptiveAvgPool2d(1)
    ),
}


@pytest.mark.parametrize("name", list(UPSAMPLING_STACKS))
def test_rf_after_an_enlarging_adaptive_pool_equals_the_gradient_measured_one(name: str) -> None:
    """O > I repeats input cells (jump I / O < 1): later windows of k cells span about k * I / O
    cells of the pool's input, not k (the rule r += (k - 1) j with j >= 1 overstated them)."""
    torch.manual_seed(0)
    model = UPSAMPLING_STACKS[name]()
    with torch.no_grad():
        size = {"1->7 then flatten + linear": 5, "6->4 uneven then 2x2": 8}.get(name, 0)
        size = size or next(s for s in range(4, 40) if model[0](torch.zeros(1, 3, s, s)).shape[-1] == int(name[0]))
    result = summary(model, (3, size, size))
    assert result.output_rf_hw[0] == widest_gradient_support(model, size)


def random_upsampling_stack(seed: int) -> tuple[nn.Sequential, int]:
    """A valid conv to I cells, adaptive pools to O > I (once or twice), then 1-2 windows with
    random kernel, stride, dilation and padding; and the input size that gives I."""
    rng = random.Random(seed)
    kernel, stride, cells = rng.randint(1, 3), rng.randint(1, 3), rng.randint(2, 6)
    grid = rng.randint(cells + 1, 2 * cells + 2)
    layers: list[nn.Module] = [nn.Conv2d(3, 2, kernel, stride), nn.AdaptiveAvgPool2d(grid)]
    if rng.random() < 0.3:
        layers.append(nn.AdaptiveMaxPool2d(grid := rng.randint(grid + 1, 2 * grid)))
    for _ in range(rng.randint(1, 2)):
        k, s, d = rng.randint(1, 3), rng.randint(1, 2), rng.randint(1, 2)
        p = rng.randint(0, k // 2)
        if (grid + 2 * p - d * (k - 1) - 1) // s + 1 >= 1:
            layers.append(nn.Conv2d(2, 2, k, s, p, d))
            grid = (grid + 2 * p - d * (k - 1) - 1) // s + 1
    return nn.Sequential(*layers), (cells - 1) * stride + kernel


@pytest.mark.parametrize("seed", range(10))
def test_random_stacks_with_enlarging_pools_match_the_gradient_measured_rf(seed: int) -> None:
    torch.manual_seed(seed)
    model, size = random_upsampling_stack(seed)
    assert summary(model, (3, size, size)).output_rf_hw[0] == widest_gradient_support(model, size), model


def test_vgg16_at_32_px_keeps_pool5s_212_through_the_enlarging_pool() -> None:
    # pool5 is 1x1 at 32 px; AdaptiveAvgPool2d(7) repeats that one cell 49 times (jump 32 / 7),
    # so the classifier sees the same 212 pixels (it used to say 212 + 6 * 32 = 404).
    with torch.device("meta"):
        model = cnnkit.create_model("vgg16")
    rows = {row.name: row for row in summary(model, (3, 32, 32)).rows}
    assert (rows["features.30"].rf, rows["features.30"].jump) == (212, 32)
    assert (rows["avgpool"].rf, rows["avgpool"].jump) == (212, Fraction(32, 7))
    assert rows["classifier.6"].rf == 212


def test_vgg16_at_64_px_sees_its_two_pool5_cells() -> None:
    # pool5 is 2x2: output cell 3 of 2 -> 7 averages both cells (212 + 32 = 244), jump 64 / 7.
    with torch.device("meta"):
        model = cnnkit.create_model("vgg16")
    rows = {row.name: row for row in summary(model, (3, 64, 64)).rows}
    assert (rows["avgpool"].rf, rows["avgpool"].jump) == (244, Fraction(64, 7))
    assert rows["classifier.6"].rf == 244


def test_alexnet_at_64_px_keeps_its_1x1_map_rf() -> None:
    with torch.device("meta"):
        model = cnnkit.create_model("alexnet")
    rows = {row.name: row for row in summary(model, (3, 64, 64)).rows}
    assert rows["features.12"].rf == rows["avgpool"].rf == rows["classifier.6"].rf == 195
    assert rows["avgpool"].jump == Fraction(32, 6)
