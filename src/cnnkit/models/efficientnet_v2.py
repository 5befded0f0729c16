"""EfficientNetV2-S (Tan & Le 2021, "EfficientNetV2: Smaller Models and Faster Training", table 4),
torchvision layout: Fused-MBConv in the early stages, MBConv (with SE) later, a 1x1 conv to 1280.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import ConvNormAct
from cnnkit.layers.inverted_residual import FusedMBConv, MBConv
from cnnkit.layers.make_divisible import make_divisible
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import sequential_feature_info
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.registry import register_model
from cnnkit.models.weight_init import init_mobilenet_weights


@dataclass(frozen=True)
class V2Stage:
    """One row of table 4: `num_blocks` (Fused-)MBConv blocks, the first with `stride`."""

    fused: bool
    expand_ratio: int
    kernel_size: int
    stride: int
    in_channels: int
    out_channels: int
    num_blocks: int


EFFICIENTNET_V2_S_STAGES: tuple[V2Stage, ...] = (
    V2Stage(fused=True, expand_ratio=1, kernel_size=3, stride=1, in_channels=24, out_channels=24, num_blocks=2),
    V2Stage(fused=True, expand_ratio=4, kernel_size=3, stride=2, in_channels=24, out_channels=48, num_blocks=4),
    V2Stage(fused=True, expand_ratio=4, kernel_size=3, stride=2, in_channels=48, out_channels=64, num_blocks=4),
    V2Stage(fused=False, expand_ratio=4, kernel_size=3, stride=2, in_channels=64, out_channels=128, num_blocks=6),
    V2Stage(fused=False, expand_ratio=6, kernel_size=3, stride=1, in_channels=128, out_channels=160, num_blocks=9),
    V2Stage(fused=False, expand_ratio=6, kernel_size=3, stride=2, in_channels=160, out_channels=256, num_blocks=15),
)
LAST_CHANNELS = 1280
NORM_EPS = 1e-3


class EfficientNetV2(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes): stem, stages `features.1..6`, 1x1 conv `features.7`.

    Stochastic depth grows linearly with block index, from 0 to `stochastic_depth_prob` (excluded).
    """

    def __init__(
        self,
        stages: tuple[V2Stage, ...],
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        drop_rate: float = 0.2,
        stochastic_depth_prob: float = 0.2,
        resolution: int = 384,
    ) -> None:
        super().__init__()
        if not 0.0 <= stochastic_depth_prob <= 1.0:  # each block gets a fraction of it
            raise ValueError(f"stochastic_depth_prob must be in [0, 1], got {stochastic_depth_prob}")
        norm_layer = partial(nn.BatchNorm2d, eps=NORM_EPS)
        features: list[nn.Module] = [
            ConvNormAct(in_chans, stages[0].in_channels, 3, stride=2, norm_layer=norm_layer, activation_layer=nn.SiLU)
        ]
        total_blocks = sum(stage.num_blocks for stage in stages)
        block_id = 0
        for stage in stages:
            blocks: list[nn.Module] = []
            channels = stage.in_channels
            for index in range(stage.num_blocks):
                expanded = make_divisible(channels * stage.expand_ratio)
                stride = stage.stride if index == 0 else 1
                sd_prob = stochastic_depth_prob * block_id / total_blocks
                if stage.fused:
                    block: nn.Module = FusedMBConv(
                        channels, expanded, stage.out_channels, stage.kernel_size, stride, nn.SiLU, norm_layer,
                        stochastic_depth_prob=sd_prob,
                    )
                else:
                    block = MBConv(
                        channels, expanded, stage.out_channels, stage.kernel_size, stride, nn.SiLU, norm_layer,
                        se_channels=max(1, channels // 4), se_activation=nn.SiLU, stochastic_depth_prob=sd_prob,
                    )
                blocks.append(block)
                channels = stage.out_channels
                block_id += 1
            features.append(nn.Sequential(*blocks))
        # timm's stages: the last stage at each stride (the stem and the 1x1 head conv are none).
        self.feature_info = sequential_feature_info(
            "features", [(stages[0].in_channels, 2)] + [(stage.out_channels, stage.stride) for stage in stages]
        )
        self.num_features = LAST_CHANNELS
        features.append(
            ConvNormAct(stages[-1].out_channels, LAST_CHANNELS, 1, norm_layer=norm_layer, activation_layer=nn.SiLU)
        )
        self.features = nn.Sequential(*features)
        self.classifier = build_head(LAST_CHANNELS, num_classes, HeadSpec(dropout=drop_rate))
        # torchvision's evaluation transform for its V2-S weights: resize 384, crop 384, bilinear.
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, resolution, resolution),
            first_conv="features.0.0",
            classifier="classifier.1",
            num_classes=num_classes,
            crop_pct=1.0,
            feature_layer="features",
        )
        init_mobilenet_weights(self, linear_init="uniform")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_model("efficientnet_v2_s")
def efficientnet_v2_s(
    num_classes: int = 1000, in_chans: int = 3, *, drop_rate: float = 0.2, stochastic_depth_prob: float = 0.2
) -> EfficientNetV2:
    """EfficientNetV2-S (21.5 M parameters, 384 px); overrides: drop_rate, stochastic_depth_prob."""
    return EfficientNetV2(
        EFFICIENTNET_V2_S_STAGES, num_classes, in_chans, drop_rate=drop_rate, stochastic_depth_prob=stochastic_depth_prob
    )
