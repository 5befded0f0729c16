"""ShuffleNet V2 (Ma et al. 2018, table 5), torchvision layout: `conv1`, `maxpool`, `stage2..4`, `conv5`, `fc`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.layers.shuffle_block import ShuffleUnit
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import last_per_reduction
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.registry import register_model


@dataclass(frozen=True)
class ShuffleNetV2Config:
    """Units per stage (stages 2-4, the first of each with stride 2) and the widths of
    conv1, stages 2-4 and conv5 (table 5's output channels for one width multiplier)."""

    repeats: tuple[int, int, int]
    widths: tuple[int, int, int, int, int]


SHUFFLENET_V2_X1_0 = ShuffleNetV2Config((4, 8, 4), (24, 116, 232, 464, 1024))


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    padding = kernel_size // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ShuffleNetV2(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features (N, widths[-1], H/32, W/32) after conv5."""

    def __init__(self, config: ShuffleNetV2Config, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 224, 224),
            first_conv="conv1.0",
            classifier="fc",
            num_classes=num_classes,
            feature_layer="conv5",
        )
        self.conv1 = _conv_bn_relu(in_chans, config.widths[0], 3, 2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = config.widths[0]
        layers = [("conv1", channels, 2), ("maxpool", channels, 2)]  # (module, out_channels, stride)
        for index, (repeats, width) in enumerate(zip(config.repeats, config.widths[1:4]), start=2):
            units = [ShuffleUnit(channels, width, 2)] + [ShuffleUnit(width, width, 1) for _ in range(repeats - 1)]
            self.add_module(f"stage{index}", nn.Sequential(*units))
            layers.append((f"stage{index}", width, 2))
            channels = width
        self.conv5 = _conv_bn_relu(channels, config.widths[4], 1, 1)
        self.feature_info = last_per_reduction([*layers, ("conv5", config.widths[4], 1)])
        self.num_features = config.widths[4]
        self.fc = build_head(self.num_features, num_classes, HeadSpec(), bare=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.stage4(self.stage3(self.stage2(x))))


@register_model("shufflenet_v2_x1_0")
def shufflenet_v2_x1_0(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV2:
    """ShuffleNet V2 1.0x (2.28 M parameters, 0.15 GMACs)."""
    return ShuffleNetV2(SHUFFLENET_V2_X1_0, num_classes, in_chans)
