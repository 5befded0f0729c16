"""MobileNetV3 Large and Small (Howard et al. 2019, Tables 1 and 2), torchvision layout.

Each row of the paper's tables is a `MobileNetV3Block`; hard-swish replaces ReLU in the deeper
half and squeeze-excitation (with a hard-sigmoid gate) sits in selected blocks. The head is
pool -> Linear -> hard-swish -> dropout -> Linear (`classifier.3`), with BatchNorm eps 1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import ActFactory, ConvNormAct
from cnnkit.layers.inverted_residual import MBConv
from cnnkit.layers.make_divisible import make_divisible
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import sequential_feature_info
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.registry import register_model
from cnnkit.models.weight_init import init_mobilenet_weights

RE: ActFactory = nn.ReLU
HS: ActFactory = nn.Hardswish


@dataclass(frozen=True)
class MobileNetV3Block:
    """One bneck row: kernel, expansion width ("exp size"), output width, SE, nonlinearity, stride."""

    kernel_size: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    activation: ActFactory
    stride: int


@dataclass(frozen=True)
class MobileNetV3Arch:
    """A whole MobileNetV3: stem width, the bneck rows, and the penultimate (pre-classifier) width."""

    stem_channels: int
    blocks: tuple[MobileNetV3Block, ...]
    last_channels: int


_B = MobileNetV3Block
MOBILENET_V3_LARGE = MobileNetV3Arch(
    stem_channels=16,
    blocks=(
        _B(3, 16, 16, False, RE, 1),
        _B(3, 64, 24, False, RE, 2),
        _B(3, 72, 24, False, RE, 1),
        _B(5, 72, 40, True, RE, 2),
        _B(5, 120, 40, True, RE, 1),
        _B(5, 120, 40, True, RE, 1),
        _B(3, 240, 80, False, HS, 2),
        _B(3, 200, 80, False, HS, 1),
        _B(3, 184, 80, False, HS, 1),
        _B(3, 184, 80, False, HS, 1),
        _B(3, 480, 112, True, HS, 1),
        _B(3, 672, 112, True, HS, 1),
        _B(5, 672, 160, True, HS, 2),
        _B(5, 960, 160, True, HS, 1),
        _B(5, 960, 160, True, HS, 1),
    ),
    last_channels=1280,
)
MOBILENET_V3_SMALL = MobileNetV3Arch(
    stem_channels=16,
    blocks=(
        _B(3, 16, 16, True, RE, 2),
        _B(3, 72, 24, False, RE, 2),
        _B(3, 88, 24, False, RE, 1),
        _B(5, 96, 40, True, HS, 2),
        _B(5, 240, 40, True, HS, 1),
        _B(5, 240, 40, True, HS, 1),
        _B(5, 120, 48, True, HS, 1),
        _B(5, 144, 48, True, HS, 1),
        _B(5, 288, 96, True, HS, 2),
        _B(5, 576, 96, True, HS, 1),
        _B(5, 576, 96, True, HS, 1),
    ),
    last_channels=1024,
)

MOBILENET_V3_CFG = DefaultCfg(first_conv="features.0.0", classifier="classifier.3", feature_layer="features")


class MobileNetV3(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); the last conv is 6x the last block's width.

    `width_mult` scales every width, rounded to multiples of 8 (SE widths: expanded / 4, rounded).
    """

    def __init__(
        self,
        arch: MobileNetV3Arch,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        width_mult: float = 1.0,
        drop_rate: float = 0.2,
    ) -> None:
        super().__init__()
        if width_mult <= 0:  # make_divisible would quietly give every layer its 8-channel minimum
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        channels = make_divisible(arch.stem_channels * width_mult)
        features: list[nn.Module] = [
            ConvNormAct(in_chans, channels, 3, stride=2, norm_layer=norm_layer, activation_layer=nn.Hardswish)
        ]
        shapes = [(channels, 2)]  # (out_channels, stride) of each layer
        for row in arch.blocks:
            expanded = make_divisible(row.expanded_channels * width_mult)
            out_channels = make_divisible(row.out_channels * width_mult)
            se_channels = make_divisible(expanded // 4) if row.use_se else 0
            features.append(
                MBConv(
                    channels,
                    expanded,
                    out_channels,
                    row.kernel_size,
                    row.stride,
                    row.activation,
                    norm_layer,
                    se_channels=se_channels,
                    se_activation=nn.ReLU,
                    se_gate=nn.Hardsigmoid,
                )
            )
            shapes.append((out_channels, row.stride))
            channels = out_channels
        # num_features: channels of forward_features (timm's meaning); head_hidden_size: pre-logits width.
        self.num_features = 6 * channels
        features.append(
            ConvNormAct(channels, self.num_features, 1, norm_layer=norm_layer, activation_layer=nn.Hardswish)
        )
        self.features = nn.Sequential(*features)
        # timm's stages: the last layer at each stride, the final 1x1 conv included (a block in timm).
        self.feature_info = sequential_feature_info("features", shapes + [(self.num_features, 1)])
        self.head_hidden_size = make_divisible(arch.last_channels * width_mult)
        self.classifier = build_head(
            self.num_features, num_classes, HeadSpec((self.head_hidden_size,), drop_rate, activation="hardswish")
        )
        self.default_cfg = replace(MOBILENET_V3_CFG, input_size=(in_chans, 224, 224), num_classes=num_classes)
        init_mobilenet_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_model("mobilenet_v3_large")
def mobilenet_v3_large(
    num_classes: int = 1000, in_chans: int = 3, *, width_mult: float = 1.0, drop_rate: float = 0.2
) -> MobileNetV3:
    """MobileNetV3-Large 1.0 (5.5 M parameters), torchvision layout."""
    return MobileNetV3(MOBILENET_V3_LARGE, num_classes, in_chans, width_mult=width_mult, drop_rate=drop_rate)


@register_model("mobilenet_v3_small")
def mobilenet_v3_small(
    num_classes: int = 1000, in_chans: int = 3, *, width_mult: float = 1.0, drop_rate: float = 0.2
) -> MobileNetV3:
    """MobileNetV3-Small 1.0 (2.5 M parameters), torchvision layout."""
    return MobileNetV3(MOBILENET_V3_SMALL, num_classes, in_chans, width_mult=width_mult, drop_rate=drop_rate)
