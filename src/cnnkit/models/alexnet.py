"""AlexNet in torchvision's single-tower form (Krizhevsky 2014, "One weird trick", not the 2-GPU 2012 net).

Names follow torchvision: `features.N`, `avgpool` (adaptive 6x6), `classifier.1/4/6`.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.plain_stack import PlainConv, plain_conv_stack
from cnnkit.models.registry import register_model

ALEXNET_CONVS = (
    PlainConv(64, 11, stride=4, padding=2, pool_after=True),
    PlainConv(192, 5, padding=2, pool_after=True),
    PlainConv(384, 3, padding=1),
    PlainConv(256, 3, padding=1),
    PlainConv(256, 3, padding=1, pool_after=True),
)


class AlexNet(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features (N, 256, h, w), pooled to 6x6 for the MLP."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, *, drop_rate: float = 0.5) -> None:
        super().__init__()
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 224, 224), first_conv="features.0",
            classifier="classifier.6",
            num_classes=num_classes,
            feature_layer="features",
        )
        relu = partial(nn.ReLU, inplace=True)
        self.features, self.feature_info = plain_conv_stack(ALEXNET_CONVS, in_chans, relu, partial(nn.MaxPool2d, 3, 2))
        self.num_features = ALEXNET_CONVS[-1].out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        # torchvision's layout: dropout before each hidden Linear, none before the last (not a HeadSpec).
        self.classifier = nn.Sequential(
            nn.Dropout(drop_rate),
            nn.Linear(self.num_features * 6 * 6, 4096),
            relu(),
            nn.Dropout(drop_rate),
            nn.Linear(4096, 4096),
            relu(),
            nn.Linear(4096, num_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(x), 1)


@register_model("alexnet")
def alexnet(num_classes: int = 1000, in_chans: int = 3, *, drop_rate: float = 0.5) -> AlexNet:
    """AlexNet (61.1M parameters); override: drop_rate (classifier dropout, 0.5)."""
    return AlexNet(num_classes, in_chans, drop_rate=drop_rate)
