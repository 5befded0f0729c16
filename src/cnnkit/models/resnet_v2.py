"""ResNet-V2 (He et al. 2016, "Identity Mappings in Deep Residual Networks"): pre-activation
bottlenecks, a final norm + ReLU, as timm's `resnetv2_50` (`stem.conv`, `stages.S.blocks.B`,
`norm`, `head.fc`). timm's classifier is a 1x1 conv on the pooled map (`head.fc`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.layers.preact import BatchNormAct2d, PreActBottleneck
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import last_per_reduction
from cnnkit.models.registry import register_model
from cnnkit.models.weight_init import init_kaiming_

STAGE_WIDTHS = (256, 512, 1024, 2048)


@dataclass(frozen=True)
class ResNetV2Config:
    """Pre-activation bottlenecks per stage (output widths STAGE_WIDTHS, strides 1, 2, 2, 2)."""

    layers: tuple[int, int, int, int]


class _Stage(nn.Module):
    """timm's ResNetStage: its blocks under `blocks`."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNetV2(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features (N, 2048, H/32, W/32) after `norm` (+ ReLU)."""

    conv_classifier = True

    def __init__(self, config: ResNetV2Config, num_classes: int = 1000, in_chans: int = 3, *, drop_rate: float = 0.0):
        super().__init__()
        # timm's resnetv2_50.a1h_in1k: Inception mean/std, bicubic, crop 0.95.
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 224, 224),
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            first_conv="stem.conv",
            classifier="head.fc",
            num_classes=num_classes,
            crop_pct=0.95,
            interpolation="bicubic",
            feature_layer="norm",
        )
        self.drop_rate = drop_rate
        self.stem = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False), pool=nn.MaxPool2d(3, 2, 1))
        )
        stages: list[nn.Module] = []
        channels = 64
        # timm's stages: the stem conv, then each stage (before the final pre-activation `norm`).
        layers = [("stem.conv", channels, 2), ("stem.pool", channels, 2)]
        for index, (depth, width) in enumerate(zip(config.layers, STAGE_WIDTHS)):
            stride = 1 if index == 0 else 2
            blocks = [PreActBottleneck(channels if i == 0 else width, width, stride if i == 0 else 1) for i in range(depth)]
            stages.append(_Stage(blocks))
            layers.append((f"stages.{index}", width, stride))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.feature_info = last_per_reduction(layers)
        self.norm = BatchNormAct2d(channels)
        self.num_features = channels
        self.head = nn.Module()
        self.head.fc = nn.Conv2d(channels, num_classes, 1)
        init_kaiming_(self, mode="fan_out")
        nn.init.normal_(self.head.fc.weight, 0.0, 0.01)
        nn.init.zeros_(self.head.fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, 1)
        if self.drop_rate > 0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return torch.flatten(x, 1) if pre_logits else torch.flatten(self.head.fc(x), 1)


@register_model("resnetv2_50")
def resnetv2_50(num_classes: int = 1000, in_chans: int = 3, *, drop_rate: float = 0.0) -> ResNetV2:
    """Pre-activation ResNet-50 (25.5 M parameters), timm naming; override: drop_rate (before head.fc)."""
    return ResNetV2(ResNetV2Config((3, 4, 6, 3)), num_classes, in_chans, drop_rate=drop_rate)
