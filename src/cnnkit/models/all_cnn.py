"""All-CNN-C (Springenberg et al. 2015, "Striving for Simplicity: The All Convolutional Net", table 2):
max-pooling replaced by stride-2 3x3 convs, the fully connected head by 1x1 convs and a global
average, for 32x32 inputs (CIFAR-10/100).

As in the paper: dropout 20% on the input and 50% after each stride-2 conv, a "valid" 3x3 conv
that leaves a 6x6 map, and a ReLU on the 1x1 class conv before the average. The classes come from
a conv before pooling, so `pre_logits` is the pooled 192-channel map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import sequential_feature_info
from cnnkit.models.registry import register_model
from cnnkit.models.weight_init import init_kaiming_


@dataclass(frozen=True)
class AllConvRow:
    """One conv + ReLU of table 2; `dropout_after` closes a stage (the paper's 50% dropout)."""

    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 1
    dropout_after: bool = False


ALL_CNN_C = (
    AllConvRow(96, 3),
    AllConvRow(96, 3),
    AllConvRow(96, 3, stride=2, dropout_after=True),
    AllConvRow(192, 3),
    AllConvRow(192, 3),
    AllConvRow(192, 3, stride=2, dropout_after=True),
    AllConvRow(192, 3, padding=0),
    AllConvRow(192, 1, padding=0),
)


class AllConvNet(ClassifierModel):
    """(N, in_chans, 32, 32) -> (N, num_classes); features (N, 192, 6, 6) at 32x32."""

    conv_classifier = True

    def __init__(
        self,
        rows: tuple[AllConvRow, ...] = ALL_CNN_C,
        num_classes: int = 10,
        in_chans: int = 3,
        *,
        drop_rate: float = 0.5,
        input_drop_rate: float = 0.2,
    ) -> None:
        super().__init__()
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 32, 32),
            mean=(0.5,) * in_chans,
            std=(0.5,) * in_chans,
            first_conv="features.1",
            classifier="classifier.0",
            num_classes=num_classes,
            crop_pct=1.0,
            feature_layer="features",
        )
        layers: list[nn.Module] = [nn.Dropout(input_drop_rate)]
        shapes = [(in_chans, 1)]  # (out_channels, stride) of each layer
        channels = in_chans
        for row in rows:
            layers += [nn.Conv2d(channels, row.out_channels, row.kernel_size, row.stride, row.padding), nn.ReLU()]
            shapes += [(row.out_channels, row.stride), (row.out_channels, 1)]
            if row.dropout_after:
                layers.append(nn.Dropout(drop_rate))
                shapes.append((row.out_channels, 1))
            channels = row.out_channels
        self.features = nn.Sequential(*layers)
        self.feature_info = sequential_feature_info("features", shapes)
        self.num_features = channels
        self.classifier = nn.Sequential(nn.Conv2d(channels, num_classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        init_kaiming_(self, mode="fan_in")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return torch.flatten(self.classifier(x), 1)


@register_model("all_cnn_c")
def all_cnn_c(
    num_classes: int = 10, in_chans: int = 3, *, drop_rate: float = 0.5, input_drop_rate: float = 0.2
) -> AllConvNet:
    """All-CNN-C for 32x32 images (1,369,738 parameters with 10 classes); overrides: drop_rate
    (after each stride-2 conv), input_drop_rate (on the input)."""
    return AllConvNet(ALL_CNN_C, num_classes, in_chans, drop_rate=drop_rate, input_drop_rate=input_drop_rate)
