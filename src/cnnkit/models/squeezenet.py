"""SqueezeNet 1.1 (Iandola et al. 2016; v1.1 from the authors' repository), torchvision layout.

Fire modules (`features.N`) and a convolutional classifier: dropout, a 1x1 conv to the classes
(`classifier.1`), ReLU, global average pool. Since the classes come out of a conv before the
pool, `pre_logits` is the pooled feature map (N, 512), and an MLP `HeadSpec` does not apply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.layers.fire import Fire
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import sequential_feature_info
from cnnkit.models.registry import register_model

# (squeeze, expand1x1, expand3x3) per Fire module; 0 marks a 3x3/2 max-pool (ceil mode).
SQUEEZENET_1_1 = (0, (16, 64, 64), (16, 64, 64), 0, (32, 128, 128), (32, 128, 128), 0,
                  (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256))


class SqueezeNet(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features (N, 512, h, w), 13x13 at 224."""

    conv_classifier = True

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, *, drop_rate: float = 0.5) -> None:
        super().__init__()
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 224, 224),
            first_conv="features.0",
            classifier="classifier.1",
            num_classes=num_classes,
            feature_layer="features",
        )
        layers: list[nn.Module] = [nn.Conv2d(in_chans, 64, kernel_size=3, stride=2), nn.ReLU(inplace=True)]
        shapes = [(64, 2), (64, 1)]  # (out_channels, stride) of each layer
        channels = 64
        for row in SQUEEZENET_1_1:
            if row == 0:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
                shapes.append((channels, 2))
            else:
                fire = Fire(channels, *row)
                layers.append(fire)
                channels = fire.out_channels
                shapes.append((channels, 1))
        self.features = nn.Sequential(*layers)
        self.feature_info = sequential_feature_info("features", shapes)
        self.num_features = channels
        final_conv = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(drop_rate), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1)
        )
        for m in self.modules():  # torchvision's init: Kaiming uniform, the final conv N(0, 0.01)
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return torch.flatten(self.classifier(x), 1)



@register_model("squeezenet1_1")
def squeezenet1_1(num_classes: int = 1000, in_chans: int = 3, *, drop_rate: float = 0.5) -> SqueezeNet:
    """SqueezeNet 1.1 (1.24 M parameters, 0.35 GMACs); override: drop_rate (before the classifier conv)."""
    return SqueezeNet(num_classes, in_chans, drop_rate=drop_rate)
