"""ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s"), torchvision layout.

A 4x4 stride-4 "patchify" stem, four stages of ConvNeXt blocks separated by LayerNorm + 2x2
stride-2 downsampling convs, and a LayerNorm -> Linear head. Sizes are `(channels, num_layers)`
stage tables.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import ConvNormAct
from cnnkit.layers.convnext_block import ConvNeXtBlock
from cnnkit.layers.layer_norm import LayerNorm2d
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import sequential_feature_info
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.registry import register_model

NORM_EPS = 1e-6


@dataclass(frozen=True)
class ConvNeXtStage:
    """`num_layers` ConvNeXt blocks at width `channels`."""

    channels: int
    num_layers: int


CONVNEXT_TINY: tuple[ConvNeXtStage, ...] = (
    ConvNeXtStage(channels=96, num_layers=3),
    ConvNeXtStage(channels=192, num_layers=3),
    ConvNeXtStage(channels=384, num_layers=9),
    ConvNeXtStage(channels=768, num_layers=3),
)
CONVNEXT_SMALL: tuple[ConvNeXtStage, ...] = (
    ConvNeXtStage(channels=96, num_layers=3),
    ConvNeXtStage(channels=192, num_layers=3),
    ConvNeXtStage(channels=384, num_layers=27),
    ConvNeXtStage(channels=768, num_layers=3),
)

CONVNEXT_BASE: tuple[ConvNeXtStage, ...] = (
    ConvNeXtStage(channels=128, num_layers=3),
    ConvNeXtStage(channels=256, num_layers=3),
    ConvNeXtStage(channels=512, num_layers=27),
    ConvNeXtStage(channels=1024, num_layers=3),
)
CONVNEXT_LARGE: tuple[ConvNeXtStage, ...] = (
    ConvNeXtStage(channels=192, num_layers=3),
    ConvNeXtStage(channels=384, num_layers=3),
    ConvNeXtStage(channels=768, num_layers=27),
    ConvNeXtStage(channels=1536, num_layers=3),
)

# torchvision's evaluation transform for its ConvNeXt weights: centre crop 224 of a bilinear resize to
# 236 (tiny), 230 (small) or 232 (base, large); each builder passes its crop_pct.
CONVNEXT_CFG = DefaultCfg(first_conv="features.0.0", classifier="classifier.2", feature_layer="features")


class ConvNeXt(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); `features.0` stem, `features.1,3,5,7` stages,
    `features.2,4,6` downsamplers; stochastic depth rises linearly from 0 to `stochastic_depth_prob`.
    """

    def __init__(
        self,
        stages: tuple[ConvNeXtStage, ...],
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        stochastic_depth_prob: float = 0.1,
        layer_scale: float = 1e-6,
        crop_pct: float = 224 / 236,
    ) -> None:
        super().__init__()
        if not stages:
            raise ValueError("ConvNeXt needs at least one stage")
        norm_layer = partial(LayerNorm2d, eps=NORM_EPS)
        features: list[nn.Module] = [
            ConvNormAct(
                in_chans,
                stages[0].channels,
                4,
                stride=4,
                padding=0,
                norm_layer=norm_layer,
                activation_layer=None,
                bias=True,
            )
        ]
        total_blocks = sum(stage.num_layers for stage in stages)
        block_id = 0
        for index, stage in enumerate(stages):
            blocks: list[nn.Module] = []
            for _ in range(stage.num_layers):
                # max(1, .) keeps a one-block network well defined (torchvision divides by total - 1).
                sd_prob = stochastic_depth_prob * block_id / max(1, total_blocks - 1)
                blocks.append(ConvNeXtBlock(stage.channels, layer_scale, sd_prob, norm_eps=NORM_EPS))
                block_id += 1
            features.append(nn.Sequential(*blocks))
            if index + 1 < len(stages):
                next_channels = stages[index + 1].channels
                features.append(
                    nn.Sequential(
                        norm_layer(stage.channels), nn.Conv2d(stage.channels, next_channels, kernel_size=2, stride=2)
                    )
                )
        self.features = nn.Sequential(*features)
        # Stem (stride 4), then each stage of blocks and the stride-2 downsampler after it: timm's
        # stages are the block stages (`stages.0`..`stages.3`).
        shapes = [(stages[0].channels, 4)]
        for stage, following in zip(stages, stages[1:]):
            shapes += [(stage.channels, 1), (following.channels, 2)]
        shapes.append((stages[-1].channels, 1))
        self.feature_info = sequential_feature_info("features", shapes)
        self.num_features = stages[-1].channels
        # The head's LayerNorm runs on the pooled (N, C, 1, 1) map, then Flatten (torchvision's names).
        self.classifier = build_head(
            self.num_features, num_classes, HeadSpec(), prefix=(norm_layer(self.num_features), nn.Flatten(1))
        )
        self.default_cfg = replace(
            CONVNEXT_CFG, input_size=(in_chans, 224, 224), num_classes=num_classes, crop_pct=crop_pct
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, C, 1, 1): the head's LayerNorm2d and Flatten come next."""
        return nn.functional.adaptive_avg_pool2d(x, 1)


@register_model("convnext_tiny")
def convnext_tiny(
    num_classes: int = 1000, in_chans: int = 3, *, stochastic_depth_prob: float = 0.1, layer_scale: float = 1e-6
) -> ConvNeXt:
    """ConvNeXt-T (28.6 M parameters)."""
    return ConvNeXt(
        CONVNEXT_TINY, num_classes, in_chans, stochastic_depth_prob=stochastic_depth_prob, layer_scale=layer_scale
    )


@register_model("convnext_small")
def convnext_small(
    num_classes: int = 1000, in_chans: int = 3, *, stochastic_depth_prob: float = 0.4, layer_scale: float = 1e-6
) -> ConvNeXt:
    """ConvNeXt-S (50.2 M parameters)."""
    return ConvNeXt(
        CONVNEXT_SMALL,
        num_classes,
        in_chans,
        stochastic_depth_prob=stochastic_depth_prob,
        layer_scale=layer_scale,
        crop_pct=224 / 230,
    )


@register_model("convnext_base")
def convnext_base(
    num_classes: int = 1000, in_chans: int = 3, *, stochastic_depth_prob: float = 0.5, layer_scale: float = 1e-6
) -> ConvNeXt:
    """ConvNeXt-B (88.6 M parameters)."""
    return ConvNeXt(
        CONVNEXT_BASE,
        num_classes,
        in_chans,
        stochastic_depth_prob=stochastic_depth_prob,
        layer_scale=layer_scale,
        crop_pct=224 / 232,
    )


@register_model("convnext_large")
def convnext_large(
    num_classes: int = 1000, in_chans: int = 3, *, stochastic_depth_prob: float = 0.5, layer_scale: float = 1e-6
) -> ConvNeXt:
    """ConvNeXt-L (197.8 M parameters)."""
    return ConvNeXt(
        CONVNEXT_LARGE,
        num_classes,
        in_chans,
        stochastic_depth_prob=stochastic_depth_prob,
        layer_scale=layer_scale,
        crop_pct=224 / 232,
    )
