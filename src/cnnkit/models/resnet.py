"""ResNet, ResNeXt, Wide ResNet and their timm variants (SE-ResNet, ResNet-D), all from one config.

He et al. 2016 (ResNet), Xie et al. 2017 (ResNeXt), Zagoruyko & Komodakis 2016 (Wide ResNet),
Hu et al. 2018 (SE), He et al. 2019 "Bag of Tricks" (ResNet-D: deep stem, average-pool shortcut).
Module names follow torchvision (`conv1`, `bn1`, `layer1`..`layer4`, `fc`) which timm shares,
so both libraries' weight files load with strict=True.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Literal, get_args

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.layers.bottleneck import Bottleneck
from cnnkit.layers.conv_norm_act import NormFactory
from cnnkit.layers.make_divisible import make_divisible
from cnnkit.layers.residual import AttentionFactory, BasicBlock, projection_shortcut
from cnnkit.layers.squeeze_excitation import SqueezeExcitation
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import last_per_reduction
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.registry import ModelBuilder, register_model
from cnnkit.models.weight_init import init_kaiming_

StemKind = Literal["imagenet", "deep", "cifar"]
STAGE_PLANES = (64, 128, 256, 512)


@dataclass(frozen=True)
class ResNetConfig:
    """One ResNet-family architecture.

    stem: "imagenet" = 7x7/2 conv + 3x3/2 max-pool; "deep" = three 3x3 convs of widths
    (stem_width, stem_width, 2 * stem_width) + max-pool (ResNet-C/D); "cifar" = one 3x3/1 conv and
    no max-pool, for 32x32 or 28x28 inputs. `se_ratio` > 0 adds squeeze-excitation after each
    block's last norm, squeezing to `se_ratio` of its channels (timm rounds to multiples of 8).
    """

    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64
    stem: StemKind = "imagenet"
    stem_width: int = 64
    avg_down: bool = False
    se_ratio: float = 0.0


def se_attention(ratio: float) -> AttentionFactory:
    """timm's SEModule sizing: squeeze channels = make_divisible(C * ratio, 8, round_limit=0)."""
    return lambda channels: SqueezeExcitation(channels, make_divisible(channels * ratio, 8, round_limit=0.0))


def _stem(config: ResNetConfig, in_chans: int, norm_layer: NormFactory) -> tuple[nn.Module, int]:
    """The stem's first conv(s) and its output width (the following norm is the model's `bn1`)."""
    if config.stem == "imagenet":
        return nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False), 64
    if config.stem == "cifar":
        return nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False), 64
    w = config.stem_width
    deep = nn.Sequential(
        nn.Conv2d(in_chans, w, 3, 2, 1, bias=False),
        norm_layer(w),
        nn.ReLU(inplace=True),
        nn.Conv2d(w, w, 3, 1, 1, bias=False),
        norm_layer(w),
        nn.ReLU(inplace=True),
        nn.Conv2d(w, 2 * w, 3, 1, 1, bias=False),
    )
    return deep, 2 * w


class ResNet(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features (N, 512 * expansion, H/32, W/32) (H/8 for cifar)."""

    def __init__(
        self,
        config: ResNetConfig,
        default_cfg: DefaultCfg,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        norm_layer: NormFactory = nn.BatchNorm2d,
        zero_init_residual: bool = False,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.default_cfg = default_cfg
        self.drop_rate = drop_rate
        self.conv1, inplanes = _stem(config, in_chans, norm_layer)
        self.bn1 = norm_layer(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if config.stem != "cifar" else nn.Identity()
        stem_stride = 1 if config.stem == "cifar" else 2
        layers = [("relu", inplanes, stem_stride), ("maxpool", inplanes, stem_stride)]
        attention = se_attention(config.se_ratio) if config.se_ratio > 0 else None
        block = config.block
        for index, (planes, depth) in enumerate(zip(STAGE_PLANES, config.layers)):
            stride = 1 if index == 0 else 2
            out_channels = planes * block.expansion
            downsample = None
            if stride != 1 or inplanes != out_channels:
                downsample = projection_shortcut(inplanes, out_channels, stride, norm_layer, avg_down=config.avg_down)
            shape = (config.groups, config.width_per_group, norm_layer, attention)
            blocks = [block(inplanes, planes, stride, downsample, *shape)]
            blocks += [block(out_channels, planes, 1, None, *shape) for _ in range(depth - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            layers.append((f"layer{index + 1}", out_channels, stride))
            inplanes = out_channels
        # timm's stages: the stem's activation (its `act1`) at stride 2, then layer1..layer4.
        self.feature_info = last_per_reduction(layers)
        self.num_features = inplanes
        self.fc = build_head(inplanes, num_classes, HeadSpec(dropout=drop_rate), bare=True)
        init_kaiming_(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    m.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def register_resnet(name: str, config: ResNetConfig, default_cfg: DefaultCfg, summary: str) -> ModelBuilder:
    """Register builder `name` for `config`; its keyword overrides are the only knobs a user gets."""

    def builder(
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        stem: StemKind | None = None,
        norm_layer: NormFactory | None = None,
        zero_init_residual: bool = False,
        drop_rate: float = 0.0,
    ) -> ResNet:
        chosen = config
        if stem is not None:
            if stem not in get_args(StemKind):
                raise CnnkitError(f"{name}: stem must be one of {get_args(StemKind)}, got {stem!r}")
            chosen = replace(config, stem=stem)
        size = 32 if chosen.stem == "cifar" else default_cfg.input_size[1]
        cfg = replace(
            default_cfg,
            input_size=(in_chans, size, size),
            num_classes=num_classes,
            first_conv="conv1.0" if chosen.stem == "deep" else "conv1",
        )
        return ResNet(
            chosen,
            cfg,
            num_classes,
            in_chans,
            norm_layer=norm_layer or nn.BatchNorm2d,
            zero_init_residual=zero_init_residual,
            drop_rate=drop_rate,
        )

    builder.__doc__ = (
        f"{summary}\n\nOverrides: stem ('imagenet' | 'deep' | 'cifar': 3x3/1 stem without max-pool for "
        "32x32 inputs), norm_layer (e.g. `make_norm_layer('group')`), zero_init_residual, drop_rate."
    )
    return register_model(name, builder)


TORCHVISION_CFG = DefaultCfg(feature_layer="layer4")
_BOTTLENECK = partial(ResNetConfig, Bottleneck)

resnet18 = register_resnet("resnet18", ResNetConfig(BasicBlock, (2, 2, 2, 2)), TORCHVISION_CFG, "ResNet-18.")
resnet34 = register_resnet("resnet34", ResNetConfig(BasicBlock, (3, 4, 6, 3)), TORCHVISION_CFG, "ResNet-34.")
resnet50 = register_resnet("resnet50", _BOTTLENECK((3, 4, 6, 3)), TORCHVISION_CFG, "ResNet-50 (v1.5).")
resnet101 = register_resnet("resnet101", _BOTTLENECK((3, 4, 23, 3)), TORCHVISION_CFG, "ResNet-101 (v1.5).")
resnet152 = register_resnet("resnet152", _BOTTLENECK((3, 8, 36, 3)), TORCHVISION_CFG, "ResNet-152 (v1.5).")
resnext50_32x4d = register_resnet(
    "resnext50_32x4d", _BOTTLENECK((3, 4, 6, 3), groups=32, width_per_group=4), TORCHVISION_CFG,
    "ResNeXt-50 32x4d: 32 groups of width 4 in every 3x3 conv.",
)
resnext101_32x8d = register_resnet(
    "resnext101_32x8d", _BOTTLENECK((3, 4, 23, 3), groups=32, width_per_group=8), TORCHVISION_CFG,
    "ResNeXt-101 32x8d: 32 groups of width 8 in every 3x3 conv.",
)
wide_resnet101_2 = register_resnet(
    "wide_resnet101_2", _BOTTLENECK((3, 4, 23, 3), width_per_group=128), TORCHVISION_CFG,
    "Wide ResNet-101-2: the bottleneck's 3x3 conv is twice as wide.",
)
wide_resnet50_2 = register_resnet(
    "wide_resnet50_2", _BOTTLENECK((3, 4, 6, 3), width_per_group=128), TORCHVISION_CFG,
    "Wide ResNet-50-2: the bottleneck's 3x3 conv is twice as wide.",
)
