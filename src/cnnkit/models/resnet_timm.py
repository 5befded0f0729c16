"""The timm-named ResNet variants: SE-ResNet-50 and ResNet-50-D, built by the ResNet family builder.

Their weights are timm's (`seresnet50.ra2_in1k`, `resnet50d.ra2_in1k`), trained with bicubic
resizing, hence the different default_cfg.
"""

from __future__ import annotations

from dataclasses import replace

from cnnkit.layers.bottleneck import Bottleneck
from cnnkit.models.resnet import TORCHVISION_CFG, ResNetConfig, register_resnet

TIMM_CFG = replace(TORCHVISION_CFG, interpolation="bicubic")

seresnet50 = register_resnet(
    "seresnet50",
    ResNetConfig(Bottleneck, (3, 4, 6, 3), se_ratio=1 / 16),
    TIMM_CFG,
    "SE-ResNet-50 (timm): squeeze-excitation (1/16) after every bottleneck's last norm.",
)
resnet50d = register_resnet(
    "resnet50d",
    ResNetConfig(Bottleneck, (3, 4, 6, 3), stem="deep", stem_width=32, avg_down=True),
    TIMM_CFG,
    "ResNet-50-D (timm): 3x3 32-32-64 deep stem and average-pool downsampling shortcuts.",
)
