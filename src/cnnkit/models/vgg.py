"""VGG-11/13/16/19 (and with BatchNorm): stacks of 3x3 convs, a 2x2 max-pool closing each stage.

Simonyan & Zisserman 2015, "Very Deep Convolutional Networks", table 1 (configurations A, B, D, E).
Module names and indices follow torchvision (`features.N`, `classifier.0/3/6`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import NormFactory
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import FeatureInfo, sequential_feature_info
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.registry import ModelBuilder, register_model
from cnnkit.models.weight_init import init_kaiming_


@dataclass(frozen=True)
class VGGConfig:
    """Conv widths per stage (each stage ends in a 2x2/2 max-pool) and whether a norm follows each conv."""

    stages: tuple[tuple[int, ...], ...]
    batch_norm: bool = False


VGG11 = VGGConfig(((64,), (128,), (256, 256), (512, 512), (512, 512)))
VGG13 = VGGConfig(((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)))
VGG16 = VGGConfig(((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)))
VGG19 = VGGConfig(((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)))


def vgg_features(
    config: VGGConfig, in_chans: int, norm_layer: NormFactory | None
) -> tuple[nn.Sequential, FeatureInfo]:
    """The flat conv[-norm]-ReLU ... max-pool stack: (N, in_chans, H, W) -> (N, 512, H/32, W/32), and
    its stages: the ReLU before each max-pool, then the last pool (timm's VGG feature_info)."""
    layers: list[nn.Module] = []
    shapes: list[tuple[int, int]] = []  # (out_channels, stride) of each layer
    channels = in_chans
    for stage in config.stages:
        for width in stage:
            conv_norm_act: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1)]
            if norm_layer is not None:
                conv_norm_act.append(norm_layer(width))
            conv_norm_act.append(nn.ReLU(inplace=True))
            layers += conv_norm_act
            shapes += [(width, 1)] * len(conv_norm_act)
            channels = width
        layers.append(nn.MaxPool2d(2, 2))
        shapes.append((channels, 2))
    return nn.Sequential(*layers), sequential_feature_info("features", shapes)


class VGG(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); the head pools to 7x7 so any H, W >= 32 works."""

    def __init__(
        self,
        config: VGGConfig,
        default_cfg: DefaultCfg,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        norm_layer: NormFactory | None = None,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        self.default_cfg = default_cfg
        self.features, self.feature_info = vgg_features(config, in_chans, norm_layer)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.num_features = config.stages[-1][-1]
        self.classifier = build_head(self.num_features * 7 * 7, num_classes, HeadSpec((4096, 4096), drop_rate))
        init_kaiming_(self, linear_std=0.01)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(x), 1)


VGG_CFG = DefaultCfg(first_conv="features.0", classifier="classifier.6", feature_layer="features")


def register_vgg(name: str, config: VGGConfig, summary: str) -> ModelBuilder:
    """Register builder `name` for `config` with explicit keyword overrides."""

    def builder(
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        norm_layer: NormFactory | None = None,
        drop_rate: float = 0.5,
    ) -> VGG:
        norm = norm_layer or (nn.BatchNorm2d if config.batch_norm else None)
        cfg = replace(VGG_CFG, input_size=(in_chans, 224, 224), num_classes=num_classes)
        return VGG(config, cfg, num_classes, in_chans, norm_layer=norm, drop_rate=drop_rate)

    builder.__doc__ = (
        f"{summary}\n\nOverrides: norm_layer (a norm after every conv; default BatchNorm for *_bn, "
        "none otherwise), drop_rate (classifier dropout, 0.5)."
    )
    return register_model(name, builder)


vgg11 = register_vgg("vgg11", VGG11, "VGG-11 (configuration A).")
vgg13 = register_vgg("vgg13", VGG13, "VGG-13 (configuration B).")
vgg16 = register_vgg("vgg16", VGG16, "VGG-16 (configuration D).")
vgg19 = register_vgg("vgg19", VGG19, "VGG-19 (configuration E).")
vgg16_bn = register_vgg("vgg16_bn", replace(VGG16, batch_norm=True), "VGG-16 with BatchNorm after every conv.")
vgg19_bn = register_vgg("vgg19_bn", replace(VGG19, batch_norm=True), "VGG-19 with BatchNorm after every conv.")
