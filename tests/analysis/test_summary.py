"""summary(): execution-order rows, parameters counted once, MACs against FlopCounterMode, memory."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from cnnkit.analysis.rf_growth import rf_growth
from cnnkit.analysis.table import format_summary
from cnnkit.analysis.summary import summary
from cnnkit.errors import CnnkitError


def flop_counter_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """The oracle: FlopCounterMode on a real CPU forward, FLOPs / 2."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.randn(shape))
    return counter.get_total_flops() // 2


class TwiceCalled(nn.Module):
    """The same conv applied twice: two rows, its parameters counted once."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.conv(x)))


def test_rows_follow_execution_order_and_repeat_for_a_second_call() -> None:
    result = summary(TwiceCalled(), (4, 8, 8))
    assert [row.name for row in result.rows] == ["conv", "act", "conv"]
    assert [row.params for row in result.rows] == [4 * 4 * 9 + 4, 0, 0]
    assert [row.rf for row in result.rows] == [3, 3, 5]
    # Each call costs Cout * Cin * k * k MACs per output pixel.
    assert [row.macs for row in result.rows] == [4 * 4 * 9 * 64, 0, 4 * 4 * 9 * 64]
    assert result.total_params == 4 * 4 * 9 + 4


def test_tied_parameters_are_counted_once() -> None:
    encoder, decoder = nn.Linear(6, 6, bias=False), nn.Linear(6, 6, bias=False)
    decoder.weight = encoder.weight
    model = nn.Sequential(nn.Flatten(), encoder, decoder)
    result = summary(model, (6,))
    assert result.total_params == 36 == sum(p.numel() for p in model.parameters())
    assert [row.params for row in result.rows] == [0, 36, 0]


def test_an_fft_module_is_reported_as_uncosted() -> None:
    class Spectral(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.rfft2(x).abs()

    result = summary(nn.Sequential(nn.Conv2d(3, 3, 3), Spectral()), (3, 16, 16))
    assert "aten._fft_r2c" in result.uncosted
    assert result.rows[1].uncosted == ("aten._fft_r2c",)
    assert result.rows[0].uncosted == ()


def test_standard_layers_leave_nothing_uncosted() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Hardswish(inplace=True), nn.MaxPool2d(2), nn.Dropout(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 3), nn.Softmax(-1),
    )
    assert summary(model, (3, 16, 16)).uncosted == ()


def test_activation_bytes_are_numel_times_element_size() -> None:
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.Flatten())
    row = summary(model, (3, 7, 9), batch_size=2).rows[0]
    assert row.output_shape == (2, 5, 7, 9)
    assert row.activation_bytes == 2 * 5 * 7 * 9 * 4
    wide = summary(model, (3, 7, 9), batch_size=2, dtype=torch.float64)
    assert wide.rows[0].activation_bytes == 2 * 5 * 7 * 9 * 8
    assert wide.total_activation_bytes == 2 * (2 * 5 * 7 * 9 * 8)


class MixedNet(nn.Module):
    """Conv, grouped conv, a functional linear in a non-leaf forward and a batched matmul."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4)
        self.head_weight = nn.Parameter(torch.randn(5, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.grouped(self.stem(x))
        tokens = x.flatten(2).transpose(1, 2)
        attention = tokens @ tokens.transpose(1, 2)
        return F.linear((attention @ tokens).mean(1), self.head_weight)


def test_totals_equal_flop_counter_mode() -> None:
    model = MixedNet()
    result = summary(model, (3, 20, 20), batch_size=2)
    assert result.total_macs == flop_counter_macs(model, (2, 3, 20, 20))
    assert result.flops == 2 * result.total_macs
    # The matmuls and the functional linear run in MixedNet.forward, outside any leaf row.
    assert result.functional_macs == result.total_macs - sum(row.macs for row in result.rows) > 0


def test_model_is_left_untouched() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary(model, (3, 8, 8), batch_size=4, device="cpu")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.device.type == "cpu" and p.grad is None for p in model.parameters())


class DataDependent(nn.Module):
    """Reads a tensor value in forward, which no meta tensor can do: forces the CPU fallback."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x if float(x.sum()) >= 0 else -x


def test_falls_back_to_the_model_device_when_meta_cannot_run() -> None:
    model = DataDependent()
    result = summary(model, (3, 10, 10))
    assert result.device == "cpu"
    assert result.total_macs == flop_counter_macs(model, (1, 3, 10, 10)) == 4 * 3 * 9 * 64


def test_meta_run_is_the_default() -> None:
    assert summary(nn.Conv2d(3, 4, 3), (3, 10, 10)).device == "meta"


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(CnnkitError, match="batch_size"):
        summary(nn.Conv2d(3, 4, 3), (3, 10, 10), batch_size=0)
    with pytest.raises(CnnkitError, match="input_size"):
        summary(nn.Conv2d(3, 4, 3), (3, 0, 10))


def test_format_summary_lists_layers_and_totals_in_human_units() -> None:
    model = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.ReLU())
    text = format_summary(summary(model))
    assert "0 (Conv2d)" in text and "1x64x112x112" in text
    # 64 * 3 * 49 weights at 112 * 112 positions = 118,013,952 MACs.
    assert "Total MACs: 118,013,952 (118.01M" in text
    assert "Total params: 9,408" in text
    assert "FLOPs (2 x MACs): 236.03M" in text


def test_an_input_the_model_cannot_take_is_a_clear_error() -> None:
    with pytest.raises(CnnkitError, match=r"Conv2d cannot run on an input of shape \(1, 5, 10, 10\)"):
        summary(nn.Conv2d(3, 4, 3), (5, 10, 10))


def test_a_channels_last_one_by_one_map_pools_without_an_uncosted_op() -> None:
    """ConvNeXt's last map below 64 px: (N, C, 1, 1) with NHWC strides; the meta mean kernel
    restrides its output with aten.as_strided_, a view that costs nothing (it was listed as uncosted)."""

    class PermutedPool(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.adaptive_avg_pool2d(x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2), 1)

    model = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), PermutedPool())
    for size in (4, 8):
        result = summary(model, (3, size, size))
        assert result.uncosted == ()
        assert result.total_macs == flop_counter_macs(model, (1, 3, size, size))


class NormAct(nn.BatchNorm2d):
    """timm's BatchNormAct2d: a BatchNorm whose activation is a child module (so not a leaf)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class ScaledConvBlock(nn.Module):
    """ConvNeXt style: a parameter of its own (the layer scale) beside a child conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.scale = nn.Parameter(torch.full((channels, 1, 1), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.conv(x)


def test_modules_with_parameters_of_their_own_get_rows_and_rows_add_up() -> None:
    """The norm of a norm-with-activation had no row and its 2C parameters were in no row (timm's
    resnetv2_50 rows summed 45,440 short), nor ConvNeXt's layer scales."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), NormAct(4), ScaledConvBlock(4))
    result = summary(model, (3, 8, 8))
    assert [(row.name, row.params) for row in result.rows] == [
        ("0", 3 * 4 * 9 + 4), ("1", 8), ("1.act", 0), ("2", 4), ("2.conv", 4 * 4 * 9 + 4)
    ]
    assert sum(row.params for row in result.rows) == result.total_params
    # The norm's output is its act's output: counted once. The layer-scaled sum is a new tensor.
    one_map = 4 * 6 * 6 * 4
    assert [row.activation_bytes for row in result.rows] == [one_map, 0, one_map, one_map, one_map]
    assert [row.rf for row in result.rows] == [3, 3, 3, 5, 5]
    assert [row.leaf for row in result.rows] == [True, False, True, False, True]
    # The RF growth lists windowed leaves only, not the parent named ...ConvBlock.
    assert [point.name for point in rf_growth(result)] == ["0", "2.conv"]


def test_padding_pooling_and_data_movement_of_any_rank_cost_nothing_and_are_not_listed() -> None:
    """An I3D-inflated CNN (replicate time padding, 3-D max-pool) listed aten.replication_pad3d and
    aten.max_pool3d_with_indices as ops it could not cost; likewise reflection/replication pads,
    3-D average pools, nearest upsampling and pixel shuffles. Bilinear upsampling does arithmetic
    outside the convention, so it stays listed."""
    from cnnkit.models.inflate import inflate_to_3d

    video = inflate_to_3d(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3)), 3)
    result = summary(nn.Sequential(*video, nn.AvgPool3d(1), nn.AdaptiveAvgPool3d(2), nn.AdaptiveMaxPool3d(1)),
                     (3, 4, 8, 8))
    assert result.uncosted == ()
    assert result.total_macs == flop_counter_macs(video, (1, 3, 4, 8, 8))
    movers = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReflectionPad2d(1), nn.ReplicationPad2d(1), nn.Upsample(scale_factor=2),
        nn.PixelShuffle(2), nn.PixelUnshuffle(2),
    )
    assert summary(movers, (3, 8, 8)).uncosted == ()
    one_d = nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReflectionPad1d(1), nn.ReplicationPad1d(1))
    assert summary(one_d, (3, 8)).uncosted == ()
    bilinear = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Upsample(scale_factor=2, mode="bilinear"))
    assert summary(bilinear, (3, 8, 8)).uncosted == ("aten.upsample_bilinear2d",)


def test_a_zero_class_model_is_summarised_without_its_classifier() -> None:
    """timm's num_classes=0: the full model's rows, `fc` now an Identity passing (1, 512) through, and
    totals less the final Linear's."""
    from cnnkit.models.factory import create_model

    full = summary(create_model("resnet18", num_classes=10), (3, 32, 32))
    headless = summary(create_model("resnet18", num_classes=0), (3, 32, 32))
    assert [row.name for row in headless.rows] == [row.name for row in full.rows]
    fc = headless.rows[-1]
    assert (fc.name, fc.kind, fc.output_shape, fc.params, fc.macs) == ("fc", "NoClassifier", (1, 512), 0, 0)
    assert headless.total_params == full.total_params - (512 * 10 + 10)
    assert headless.total_macs == full.total_macs - 512 * 10
