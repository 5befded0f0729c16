"""DenseNet-BC-121, -161, -169 and -201 (Huang et al. 2017, "Densely Connected Convolutional Networks", table 1).

Names follow torchvision: `features.conv0/norm0/relu0/pool0`, `features.denseblockN.denselayerM`,
`features.transitionN`, `features.norm5`, `classifier`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import NormFactory
from cnnkit.layers.dense import DenseBlock, Transition
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import last_per_reduction
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.registry import ModelBuilder, register_model
from cnnkit.models.weight_init import init_kaiming_


@dataclass(frozen=True)
class DenseNetConfig:
    """Growth rate k, layers per dense block, stem width, and the bottleneck factor (4k channels)."""

    growth_rate: int
    block_config: tuple[int, ...]
    num_init_features: int
    bn_size: int = 4


class DenseNet(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features (N, C, H/32, W/32) after norm5 + ReLU."""

    def __init__(
        self,
        config: DenseNetConfig,
        default_cfg: DefaultCfg,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        norm_layer: NormFactory = nn.BatchNorm2d,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.default_cfg = default_cfg
        width = config.num_init_features
        self.features = nn.Sequential(
            OrderedDict(
                conv0=nn.Conv2d(in_chans, width, 7, 2, 3, bias=False),
                norm0=norm_layer(width),
                relu0=nn.ReLU(inplace=True),
                pool0=nn.MaxPool2d(3, 2, 1),
            )
        )
        last = len(config.block_config) - 1
        # (module, out_channels, stride) in order; timm's norm0 / norm5 include the ReLU: our relu0 / relu5.
        layers = [("features.relu0", width, 2), ("features.pool0", width, 2)]
        for i, num_layers in enumerate(config.block_config):
            block = DenseBlock(num_layers, width, config.growth_rate, config.bn_size, drop_rate, norm_layer)
            self.features.add_module(f"denseblock{i + 1}", block)
            width = block.out_channels
            layers.append((f"features.denseblock{i + 1}", width, 1))
            if i != last:
                # Compression 0.5 (the "C" of DenseNet-BC).
                self.features.add_module(f"transition{i + 1}", Transition(width, width // 2, norm_layer))
                width //= 2
                layers.append((f"features.transition{i + 1}", width, 2))
        self.features.add_module("norm5", norm_layer(width))
        self.features.add_module("relu5", nn.ReLU(inplace=True))  # torchvision applies it functionally
        self.feature_info = last_per_reduction([*layers, ("features.relu5", width, 1)])
        self.num_features = width
        self.classifier = build_head(width, num_classes, HeadSpec(), bare=True)
        init_kaiming_(self, mode="fan_in")
        nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


DENSENET_CFG = DefaultCfg(first_conv="features.conv0", classifier="classifier", feature_layer="features")


def register_densenet(name: str, config: DenseNetConfig, summary: str) -> ModelBuilder:
    """Register builder `name` for `config` with explicit keyword overrides."""

    def builder(
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        norm_layer: NormFactory | None = None,
        drop_rate: float = 0.0,
    ) -> DenseNet:
        cfg = replace(DENSENET_CFG, input_size=(in_chans, 224, 224), num_classes=num_classes)
        return DenseNet(
            config, cfg, num_classes, in_chans, norm_layer=norm_layer or nn.BatchNorm2d, drop_rate=drop_rate
        )

    builder.__doc__ = (
        f"{summary}\n\nOverrides: norm_layer (e.g. `make_norm_layer('group')`), "
        "drop_rate (dropout on each dense layer's new features)."
    )
    return register_model(name, builder)


densenet121 = register_densenet("densenet121", DenseNetConfig(32, (6, 12, 24, 16), 64), "DenseNet-BC-121, k=32.")
densenet161 = register_densenet("densenet161", DenseNetConfig(48, (6, 12, 36, 24), 96), "DenseNet-BC-161, k=48.")
densenet169 = register_densenet("densenet169", DenseNetConfig(32, (6, 12, 32, 32), 64), "DenseNet-BC-169, k=32.")
densenet201 = register_densenet("densenet201", DenseNetConfig(32, (6, 12, 48, 32), 64), "DenseNet-BC-201, k=32.")
