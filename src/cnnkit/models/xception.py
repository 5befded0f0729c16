"""Xception (Chollet 2017, "Xception: Deep Learning with Depthwise Separable Convolutions", fig. 5),
as timm's `legacy_xception` (the Keras port's weights): entry flow, 8 middle-flow blocks, exit flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.layers.xception_block import SeparableConv2d, XceptionBlock
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import last_per_reduction
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.registry import register_model


@dataclass(frozen=True)
class XceptionRow:
    """One residual block `blockN`: widths, separable convs, stride and the two flags of XceptionBlock."""

    in_channels: int
    out_channels: int
    reps: int
    stride: int
    start_with_relu: bool = True
    grow_first: bool = True


XCEPTION_BLOCKS: tuple[XceptionRow, ...] = (
    XceptionRow(64, 128, 2, 2, start_with_relu=False),  # entry flow
    XceptionRow(128, 256, 2, 2),
    XceptionRow(256, 728, 2, 2),
    *(XceptionRow(728, 728, 3, 1) for _ in range(8)),  # middle flow
    XceptionRow(728, 1024, 2, 2, grow_first=False),  # exit flow
)
NUM_FEATURES = 2048

# timm's legacy_xception.tf_in1k: 299 px, Inception mean/std, bicubic, crop 0.8975.
XCEPTION_CFG = DefaultCfg(
    input_size=(3, 299, 299),
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    first_conv="conv1",
    classifier="fc",
    crop_pct=0.8975,
    interpolation="bicubic",
    feature_layer="act4",
)


class Xception(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features (N, 2048, h, w), 10x10 at 299."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, *, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.default_cfg = DefaultCfg(
            **{**XCEPTION_CFG.to_dict(), "input_size": (in_chans, 299, 299), "num_classes": num_classes}
        )
        self.drop_rate = drop_rate
        self.conv1 = nn.Conv2d(in_chans, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.act2 = nn.ReLU(inplace=True)
        for index, row in enumerate(XCEPTION_BLOCKS, start=1):
            block = XceptionBlock(
                row.in_channels, row.out_channels, row.reps, row.stride,
                start_with_relu=row.start_with_relu, grow_first=row.grow_first,
            )
            self.add_module(f"block{index}", block)
        # timm's stages: block i's output is read where block i + 1 opens with its (not in-place) ReLU.
        count = len(XCEPTION_BLOCKS)
        blocks = [
            (f"block{i + 1}.rep.0" if i < count else f"block{i}", row.out_channels, row.stride)
            for i, row in enumerate(XCEPTION_BLOCKS, start=1)
        ]
        stem = [("act2", self.conv2.out_channels, self.conv1.stride[0] * self.conv2.stride[0])]
        self.feature_info = last_per_reduction([*stem, *blocks, ("act4", NUM_FEATURES, 1)])
        self.conv3 = SeparableConv2d(1024, 1536)
        self.bn3 = nn.BatchNorm2d(1536)
        self.act3 = nn.ReLU(inplace=True)
        self.conv4 = SeparableConv2d(1536, NUM_FEATURES)
        self.bn4 = nn.BatchNorm2d(NUM_FEATURES)
        self.act4 = nn.ReLU(inplace=True)
        self.num_features = NUM_FEATURES
        self.fc = build_head(NUM_FEATURES, num_classes, HeadSpec(dropout=drop_rate), bare=True)
        for m in self.modules():  # timm's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        for index in range(1, len(XCEPTION_BLOCKS) + 1):
            x = getattr(self, f"block{index}")(x)
        x = self.act3(self.bn3(self.conv3(x)))
        return self.act4(self.bn4(self.conv4(x)))


@register_model("legacy_xception")
def legacy_xception(num_classes: int = 1000, in_chans: int = 3, *, drop_rate: float = 0.0) -> Xception:
    """Xception (22.9 M parameters, 299 px), timm naming; override: drop_rate (before fc)."""
    return Xception(num_classes, in_chans, drop_rate=drop_rate)
