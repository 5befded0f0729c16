"""MobileNet v1 (Howard et al. 2017, Table 1): a plain stack of depthwise-separable convs.

State-dict names follow timm's `mobilenetv1_100` (`conv_stem`, `bn1`, `blocks.S.B.conv_dw/...`,
`classifier`), so its weights load unchanged; ReLU6 and no residuals, as in timm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from cnnkit.layers.depthwise_separable import DepthwiseSeparableConv
from cnnkit.layers.make_divisible import make_divisible
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import last_per_reduction
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.registry import register_model


@dataclass(frozen=True)
class SeparableStage:
    """`num_blocks` depthwise-separable blocks to `out_channels`, the first with `stride`."""

    out_channels: int
    num_blocks: int
    stride: int


MOBILENET_V1_STAGES: tuple[SeparableStage, ...] = (
    SeparableStage(out_channels=64, num_blocks=1, stride=1),
    SeparableStage(out_channels=128, num_blocks=2, stride=2),
    SeparableStage(out_channels=256, num_blocks=2, stride=2),
    SeparableStage(out_channels=512, num_blocks=6, stride=2),
    SeparableStage(out_channels=1024, num_blocks=2, stride=2),
)
STEM_CHANNELS = 32

# timm's pretrained config for mobilenetv1_100.ra4_e3600_r224_in1k (Inception mean/std).
MOBILENET_V1_CFG = DefaultCfg(
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    first_conv="conv_stem",
    classifier="classifier",
    interpolation="bicubic",
    feature_layer="blocks",
)


def init_tf_weights(model: nn.Module) -> None:
    """timm's TF-style init: convs N(0, sqrt(2 / fan_out)) with fan_out per group, Linear U(+-1/sqrt(out))."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


class MobileNetV1(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features end at stride 32 with 1024 * width channels."""

    def __init__(
        self,
        stages: tuple[SeparableStage, ...] = MOBILENET_V1_STAGES,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        width_mult: float = 1.0,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if width_mult <= 0:  # make_divisible would quietly give every layer its 8-channel minimum
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if not stages:
            raise ValueError("MobileNetV1 needs at least one stage")
        channels = make_divisible(STEM_CHANNELS * width_mult)
        self.conv_stem = nn.Conv2d(in_chans, channels, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = nn.ReLU6(inplace=True)
        blocks: list[nn.Module] = []
        layers = [("act1", channels, 2)]  # (module, out_channels, stride); timm's stages: blocks.0..4
        for stage in stages:
            out_channels = make_divisible(stage.out_channels * width_mult)
            stage_blocks: list[nn.Module] = []
            for index in range(stage.num_blocks):
                stride = stage.stride if index == 0 else 1
                stage_blocks.append(DepthwiseSeparableConv(channels, out_channels, 3, stride))
                channels = out_channels
            layers.append((f"blocks.{len(blocks)}", out_channels, stage.stride))
            blocks.append(nn.Sequential(*stage_blocks))
        self.blocks = nn.Sequential(*blocks)
        self.feature_info = last_per_reduction(layers)
        self.num_features = channels
        self.drop_rate = drop_rate
        self.classifier = build_head(channels, num_classes, HeadSpec(dropout=drop_rate), bare=True)
        self.default_cfg = replace(MOBILENET_V1_CFG, input_size=(in_chans, 224, 224), num_classes=num_classes)
        init_tf_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.act1(self.bn1(self.conv_stem(x))))


@register_model("mobilenetv1_100")
def mobilenetv1_100(
    num_classes: int = 1000, in_chans: int = 3, *, width_mult: float = 1.0, drop_rate: float = 0.0
) -> MobileNetV1:
    """MobileNet v1 1.0 (4.2 M parameters), timm naming."""
    return MobileNetV1(num_classes=num_classes, in_chans=in_chans, width_mult=width_mult, drop_rate=drop_rate)
