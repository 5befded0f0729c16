"""MobileNetV2 (Sandler et al. 2018): a stem conv, 17 inverted residual blocks, a 1x1 conv to 1280.

The architecture is the paper's Table 2 `(t, c, n, s)` rows as data. State-dict names follow
torchvision's `mobilenet_v2` (`features.N...`, `classifier.1`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import ConvNormAct
from cnnkit.layers.inverted_residual import InvertedResidual
from cnnkit.layers.make_divisible import make_divisible
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import sequential_feature_info
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.registry import register_model
from cnnkit.models.weight_init import init_mobilenet_weights


@dataclass(frozen=True)
class InvertedResidualStage:
    """One row of MobileNetV2's Table 2: `num_blocks` blocks, the first with `stride`."""

    expand_ratio: int
    out_channels: int
    num_blocks: int
    stride: int


MOBILENET_V2_STAGES: tuple[InvertedResidualStage, ...] = (
    InvertedResidualStage(expand_ratio=1, out_channels=16, num_blocks=1, stride=1),
    InvertedResidualStage(expand_ratio=6, out_channels=24, num_blocks=2, stride=2),
    InvertedResidualStage(expand_ratio=6, out_channels=32, num_blocks=3, stride=2),
    InvertedResidualStage(expand_ratio=6, out_channels=64, num_blocks=4, stride=2),
    InvertedResidualStage(expand_ratio=6, out_channels=96, num_blocks=3, stride=1),
    InvertedResidualStage(expand_ratio=6, out_channels=160, num_blocks=3, stride=2),
    InvertedResidualStage(expand_ratio=6, out_channels=320, num_blocks=1, stride=1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280

MOBILENET_V2_CFG = DefaultCfg(first_conv="features.0.0", classifier="classifier.1", feature_layer="features")


class MobileNetV2(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features end at stride 32 with `num_features` channels.

    `width_mult` scales every width (rounded to multiples of 8); the last conv never shrinks below
    1280 (the paper's choice for width_mult < 1).
    """

    def __init__(
        self,
        stages: tuple[InvertedResidualStage, ...] = MOBILENET_V2_STAGES,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        width_mult: float = 1.0,
        drop_rate: float = 0.2,
    ) -> None:
        super().__init__()
        if width_mult <= 0:  # make_divisible would quietly give every layer its 8-channel minimum
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if not stages:
            raise ValueError("MobileNetV2 needs at least one stage")
        channels = make_divisible(STEM_CHANNELS * width_mult)
        self.num_features = make_divisible(LAST_CHANNELS * max(1.0, width_mult))
        features: list[nn.Module] = [ConvNormAct(in_chans, channels, 3, stride=2, activation_layer=nn.ReLU6)]
        shapes = [(channels, 2)]  # (out_channels, stride) of each block
        for stage in stages:
            out_channels = make_divisible(stage.out_channels * width_mult)
            for index in range(stage.num_blocks):
                stride = stage.stride if index == 0 else 1
                features.append(InvertedResidual(channels, out_channels, stride, stage.expand_ratio))
                shapes.append((out_channels, stride))
                channels = out_channels
        # timm's stages: the last block at each stride (the 1x1 head conv is none).
        self.feature_info = sequential_feature_info("features", shapes)
        features.append(ConvNormAct(channels, self.num_features, 1, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = build_head(self.num_features, num_classes, HeadSpec(dropout=drop_rate))
        self.default_cfg = replace(MOBILENET_V2_CFG, input_size=(in_chans, 224, 224), num_classes=num_classes)
        init_mobilenet_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_model("mobilenet_v2")
def mobilenet_v2(
    num_classes: int = 1000, in_chans: int = 3, *, width_mult: float = 1.0, drop_rate: float = 0.2
) -> MobileNetV2:
    """MobileNetV2 1.0 (3.5 M parameters), torchvision layout."""
    return MobileNetV2(num_classes=num_classes, in_chans=in_chans, width_mult=width_mult, drop_rate=drop_rate)
