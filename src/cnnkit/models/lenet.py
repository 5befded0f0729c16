"""LeNet-5 (LeCun et al. 1998, "Gradient-Based Learning Applied to Document Recognition", fig. 2).

Classic layout on a 1x32x32 input: C1 conv5x5(6) - S2 pool2 - C3 conv5x5(16) - S4 pool2 - C5 fc120
- F6 fc84 - output fc10 = 61,706 parameters. Choices, documented: C3 is fully connected to all six
S2 maps (the paper's sparse table 1 is dropped, as every modern port does); the subsampling layers
are plain 2x2 average pools (the paper's have a trainable scale and bias); activations are tanh
(the paper's scaled 1.7159 * tanh(2x/3) differs by a constant factor); the RBF output layer is a
Linear layer. An adaptive 5x5 average pool before C5 (identity at 32x32) lets 28x28 MNIST in.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.plain_stack import PlainConv, plain_conv_stack
from cnnkit.models.registry import register_model

LENET5_CONVS = (PlainConv(6, 5, pool_after=True), PlainConv(16, 5, pool_after=True))
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


class LeNet5(ClassifierModel):
    """(N, in_chans, 32, 32) -> (N, num_classes); features (N, 16, 5, 5)."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 32, 32),
            mean=MNIST_MEAN,
            std=MNIST_STD,
            first_conv="features.0",
            classifier="classifier.4",
            num_classes=num_classes,
            crop_pct=1.0,
            feature_layer="features",
        )
        self.features, self.feature_info = plain_conv_stack(LENET5_CONVS, in_chans, nn.Tanh, partial(nn.AvgPool2d, 2))
        self.num_features = LENET5_CONVS[-1].out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(5)
        self.classifier = build_head(self.num_features * 5 * 5, num_classes, HeadSpec((120, 84), activation="tanh"))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(x), 1)


@register_model("lenet5")
def lenet5(num_classes: int = 10, in_chans: int = 1) -> LeNet5:
    """LeNet-5, tanh + average pooling (61,706 parameters with 10 classes on one channel)."""
    return LeNet5(num_classes, in_chans)
