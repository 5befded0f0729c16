"""MobileNetV2 (Sandler et al. 2018): a stem conv, 17 inverted residual blocks, a 1x1 conv to 1280.

The architecture is the paper's Table 2 `(t, c, n, s)` rows as data. State-dict names follow
torchvision's `mobilenet_v2` (`features.N...`, `classifier.1`). Also home of the
`PooledClassifierModel` head shared by the MobileNet/EfficientNet families.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import ConvNormAct
from cnnkit.layers.inverted_residual import InvertedResidual
from cnnkit.layers.make_divisible import make_divisible
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.registry import register_model
from cnnkit.models.weight_init import init_kaiming_


class PooledClassifierModel(ClassifierModel):
    """`features` (N, C, h, w) -> global average pool -> `classifier` (an nn.Sequential ending in Linear).

    `forward_head(pre_logits=True)` returns the (N, D) input of that last Linear (the module at
    `default_cfg.classifier`), which is what a new head for fine-tuning receives.
    """

    features: nn.Sequential
    classifier: nn.Sequential

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        x = self.classifier[:-1](x)
        return x if pre_logits else self.classifier[-1](x)


def init_mobilenet_weights(model: nn.Module, *, linear_init: str = "normal") -> None:
    """torchvision's MobileNet/EfficientNet init: He-normal (fan_out) convs, unit norms, small Linear.

    `linear_init="normal"`: N(0, 0.01) (MobileNetV2/V3); `"uniform"`: U(+-1/sqrt(out_features)) (EfficientNet).
    """
    if linear_init not in ("normal", "uniform"):
        raise ValueError(f"linear_init must be 'normal' or 'uniform', got {linear_init!r}")
    init_kaiming_(model, mode="fan_out", linear_std=0.01 if linear_init == "normal" else None)
    if linear_init == "uniform":
        for m in model.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / m.out_features**0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)


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

MOBILENET_V2_CFG = DefaultCfg(first_conv="features.0.0", classifier="classifier.1")


class MobileNetV2(PooledClassifierModel):
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
        if not stages:
            raise ValueError("MobileNetV2 needs at least one stage")
        channels = make_divisible(STEM_CHANNELS * width_mult)
        self.num_features = make_divisible(LAST_CHANNELS * max(1.0, width_mult))
        features: list[nn.Module] = [ConvNormAct(in_chans, channels, 3, stride=2, activation_layer=nn.ReLU6)]
        for stage in stages:
            out_channels = make_divisible(stage.out_channels * width_mult)
            for index in range(stage.num_blocks):
                stride = stage.stride if index == 0 else 1
                features.append(InvertedResidual(channels, out_channels, stride, stage.expand_ratio))
                channels = out_channels
        features.append(ConvNormAct(channels, self.num_features, 1, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(self.num_features, num_classes))
        self.num_classes = num_classes
        self.default_cfg = replace(MOBILENET_V2_CFG, input_size=(in_chans, 224, 224), num_classes=num_classes)
        init_mobilenet_weights(self)


@register_model
def mobilenet_v2(
    num_classes: int = 1000, in_chans: int = 3, *, width_mult: float = 1.0, drop_rate: float = 0.2
) -> MobileNetV2:
    """MobileNetV2 1.0 (3.5 M parameters), torchvision layout."""
    return MobileNetV2(num_classes=num_classes, in_chans=in_chans, width_mult=width_mult, drop_rate=drop_rate)
