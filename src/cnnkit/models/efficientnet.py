"""EfficientNet B0-B7 (Tan & Le 2019): one B0 stage table plus compound scaling, torchvision layout.

B1..B7 are not separate tables: each scales B0's widths by `width_mult` (rounded to multiples
of 8) and its per-stage repeats by `depth_mult` (rounded up), as the paper's compound scaling
(Section 3.3) prescribes; resolution and dropout grow with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import ConvNormAct
from cnnkit.layers.inverted_residual import MBConv
from cnnkit.layers.make_divisible import make_divisible
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import sequential_feature_info
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.registry import ModelBuilder, register_model
from cnnkit.models.weight_init import init_mobilenet_weights


@dataclass(frozen=True)
class MBConvStage:
    """One row of EfficientNet's Table 1: `num_blocks` MBConv blocks, the first with `stride`."""

    expand_ratio: int
    kernel_size: int
    stride: int
    in_channels: int
    out_channels: int
    num_blocks: int


EFFICIENTNET_B0_STAGES: tuple[MBConvStage, ...] = (
    MBConvStage(expand_ratio=1, kernel_size=3, stride=1, in_channels=32, out_channels=16, num_blocks=1),
    MBConvStage(expand_ratio=6, kernel_size=3, stride=2, in_channels=16, out_channels=24, num_blocks=2),
    MBConvStage(expand_ratio=6, kernel_size=5, stride=2, in_channels=24, out_channels=40, num_blocks=2),
    MBConvStage(expand_ratio=6, kernel_size=3, stride=2, in_channels=40, out_channels=80, num_blocks=3),
    MBConvStage(expand_ratio=6, kernel_size=5, stride=1, in_channels=80, out_channels=112, num_blocks=3),
    MBConvStage(expand_ratio=6, kernel_size=5, stride=2, in_channels=112, out_channels=192, num_blocks=4),
    MBConvStage(expand_ratio=6, kernel_size=3, stride=1, in_channels=192, out_channels=320, num_blocks=1),
)


@dataclass(frozen=True)
class CompoundScaling:
    """One EfficientNet variant: B0 scaled by (width, depth, resolution), plus its dropout.

    `crop_pct` is crop / resize of torchvision's evaluation transform for the ported weights;
    `norm_eps` / `norm_momentum` are torchvision's BatchNorm settings (B5-B7 use TF's 1e-3 / 0.01).
    """

    width_mult: float
    depth_mult: float
    resolution: int
    dropout: float
    crop_pct: float
    norm_eps: float = 1e-5
    norm_momentum: float = 0.1


EFFICIENTNET_SCALING: dict[str, CompoundScaling] = {
    "b0": CompoundScaling(1.0, 1.0, 224, 0.2, crop_pct=224 / 256),
    "b1": CompoundScaling(1.0, 1.1, 240, 0.2, crop_pct=240 / 256),
    "b2": CompoundScaling(1.1, 1.2, 260, 0.3, crop_pct=1.0),
    "b3": CompoundScaling(1.2, 1.4, 300, 0.3, crop_pct=300 / 320),
    "b4": CompoundScaling(1.4, 1.8, 380, 0.4, crop_pct=380 / 384),
    "b5": CompoundScaling(1.6, 2.2, 456, 0.4, crop_pct=1.0, norm_eps=1e-3, norm_momentum=0.01),
    "b6": CompoundScaling(1.8, 2.6, 528, 0.5, crop_pct=1.0, norm_eps=1e-3, norm_momentum=0.01),
    "b7": CompoundScaling(2.0, 3.1, 600, 0.5, crop_pct=1.0, norm_eps=1e-3, norm_momentum=0.01),
}


def scale_stage(stage: MBConvStage, scaling: CompoundScaling) -> MBConvStage:
    """B0 row -> scaled row: channels make_divisible(c * width, 8), repeats ceil(n * depth)."""
    return MBConvStage(
        expand_ratio=stage.expand_ratio,
        kernel_size=stage.kernel_size,
        stride=stage.stride,
        in_channels=make_divisible(stage.in_channels * scaling.width_mult),
        out_channels=make_divisible(stage.out_channels * scaling.width_mult),
        num_blocks=math.ceil(stage.num_blocks * scaling.depth_mult),
    )


class EfficientNet(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes): stem, MBConv stages (`features.1..7`), 1x1 conv to 4x width.

    Stochastic depth grows linearly with block index, from 0 to `stochastic_depth_prob` (excluded).
    """

    def __init__(
        self,
        scaling: CompoundScaling,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        drop_rate: float,
        stochastic_depth_prob: float = 0.2,
        stages: tuple[MBConvStage, ...] = EFFICIENTNET_B0_STAGES,
    ) -> None:
        super().__init__()
        if not 0.0 <= stochastic_depth_prob <= 1.0:  # each block gets a fraction of it
            raise ValueError(f"stochastic_depth_prob must be in [0, 1], got {stochastic_depth_prob}")
        if not stages:
            raise ValueError("EfficientNet needs at least one stage")
        norm_layer = partial(nn.BatchNorm2d, eps=scaling.norm_eps, momentum=scaling.norm_momentum)
        scaled = [scale_stage(stage, scaling) for stage in stages]
        features: list[nn.Module] = [
            ConvNormAct(in_chans, scaled[0].in_channels, 3, stride=2, norm_layer=norm_layer, activation_layer=nn.SiLU)
        ]
        total_blocks = sum(stage.num_blocks for stage in scaled)
        block_id = 0
        for stage in scaled:
            blocks: list[nn.Module] = []
            channels = stage.in_channels
            for index in range(stage.num_blocks):
                blocks.append(
                    MBConv(
                        channels,
                        make_divisible(channels * stage.expand_ratio),
                        stage.out_channels,
                        stage.kernel_size,
                        stage.stride if index == 0 else 1,
                        nn.SiLU,
                        norm_layer,
                        se_channels=max(1, channels // 4),
                        se_activation=nn.SiLU,
                        stochastic_depth_prob=stochastic_depth_prob * block_id / total_blocks,
                    )
                )
                channels = stage.out_channels
                block_id += 1
            features.append(nn.Sequential(*blocks))
        # timm's stages: the last MBConv stage at each stride (the stem and the 1x1 head conv are none).
        self.feature_info = sequential_feature_info(
            "features", [(scaled[0].in_channels, 2)] + [(stage.out_channels, stage.stride) for stage in scaled]
        )
        self.num_features = 4 * scaled[-1].out_channels
        features.append(
            ConvNormAct(scaled[-1].out_channels, self.num_features, 1, norm_layer=norm_layer, activation_layer=nn.SiLU)
        )
        self.features = nn.Sequential(*features)
        self.classifier = build_head(self.num_features, num_classes, HeadSpec(dropout=drop_rate))
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, scaling.resolution, scaling.resolution),
            first_conv="features.0.0",
            classifier="classifier.1",
            num_classes=num_classes,
            crop_pct=scaling.crop_pct,
            interpolation="bicubic",
            feature_layer="features",
        )
        init_mobilenet_weights(self, linear_init="uniform")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def register_efficientnet(variant: str, summary: str) -> ModelBuilder:
    """Register builder `efficientnet_<variant>` for `EFFICIENTNET_SCALING[variant]`; its keywords are the overrides."""
    scaling = EFFICIENTNET_SCALING[variant]

    def builder(
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        drop_rate: float | None = None,
        stochastic_depth_prob: float = 0.2,
    ) -> EfficientNet:
        return EfficientNet(
            scaling,
            num_classes,
            in_chans,
            drop_rate=scaling.dropout if drop_rate is None else drop_rate,
            stochastic_depth_prob=stochastic_depth_prob,
        )

    builder.__doc__ = (
        f"{summary}\n\nOverrides: drop_rate (None: the variant's {scaling.dropout}), stochastic_depth_prob."
    )
    return register_model(f"efficientnet_{variant}", builder)


efficientnet_b0 = register_efficientnet("b0", "EfficientNet-B0 (5.3 M parameters, 224 px).")
efficientnet_b1 = register_efficientnet("b1", "EfficientNet-B1 (7.8 M parameters, 240 px).")
efficientnet_b2 = register_efficientnet("b2", "EfficientNet-B2 (9.1 M parameters, 260 px).")
efficientnet_b3 = register_efficientnet("b3", "EfficientNet-B3 (12.2 M parameters, 300 px).")
efficientnet_b4 = register_efficientnet("b4", "EfficientNet-B4 (19.3 M parameters, 380 px).")
efficientnet_b5 = register_efficientnet("b5", "EfficientNet-B5 (30.4 M parameters, 456 px).")
efficientnet_b6 = register_efficientnet("b6", "EfficientNet-B6 (43.0 M parameters, 528 px).")
efficientnet_b7 = register_efficientnet("b7", "EfficientNet-B7 (66.3 M parameters, 600 px).")
