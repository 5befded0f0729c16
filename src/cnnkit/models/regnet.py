"""RegNetY (Radosavovic et al. 2020), torchvision layout: `stem`, `trunk_output.blockS.blockS-i`, `fc`.

The paper's generator (w_0, w_a, w_m quantised to multiples of 8) yields per-stage depths and
widths; they are written here as the rows it yields for each published model (torchvision's
`BlockParams.from_init_params`), so the architecture reads as data.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import ConvNormAct
from cnnkit.layers.regnet_block import ResBottleneckBlock
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import last_per_reduction
from cnnkit.models.heads import HeadSpec, build_head
from cnnkit.models.registry import ModelBuilder, register_model

STEM_WIDTH = 32


@dataclass(frozen=True)
class RegNetConfig:
    """Blocks and output width of each stage (every stage starts with stride 2), the group width
    of the 3x3 convs and the squeeze-excitation ratio (RegNetY: 0.25 of the block's input width)."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    group_width: int
    se_ratio: float | None = 0.25


# From w_0=48, w_a=27.89, w_m=2.09, depth 16, group width 8.
REGNET_Y_400MF = RegNetConfig(depths=(1, 3, 6, 6), widths=(48, 104, 208, 440), group_width=8)
# From w_0=48, w_a=20.71, w_m=2.65, depth 27, group width 24.
REGNET_Y_1_6GF = RegNetConfig(depths=(2, 6, 17, 2), widths=(48, 120, 336, 888), group_width=24)


class RegNet(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features (N, widths[-1], H/32, W/32)."""

    def __init__(self, config: RegNetConfig, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 224, 224),
            first_conv="stem.0",
            classifier="fc",
            num_classes=num_classes,
            feature_layer="trunk_output",
        )
        self.stem = ConvNormAct(in_chans, STEM_WIDTH, 3, stride=2)
        stages: list[tuple[str, nn.Module]] = []
        width = STEM_WIDTH
        for index, (depth, width_out) in enumerate(zip(config.depths, config.widths), start=1):
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for i in range(depth):
                blocks[f"block{index}-{i}"] = ResBottleneckBlock(
                    width if i == 0 else width_out, width_out, 2 if i == 0 else 1, config.group_width, config.se_ratio
                )
            stages.append((f"block{index}", nn.Sequential(blocks)))
            width = width_out
        self.trunk_output = nn.Sequential(OrderedDict(stages))
        self.feature_info = last_per_reduction(
            [("stem", STEM_WIDTH, 2)] + [(f"trunk_output.{name}", w, 2) for (name, _), w in zip(stages, config.widths)]
        )
        self.num_features = width
        self.fc = build_head(width, num_classes, HeadSpec(), bare=True)
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk_output(self.stem(x))


def register_regnet(name: str, config: RegNetConfig, summary: str) -> ModelBuilder:
    """Register builder `name` for `config`."""

    def builder(num_classes: int = 1000, in_chans: int = 3) -> RegNet:
        return RegNet(config, num_classes, in_chans)

    builder.__doc__ = summary
    return register_model(name, builder)


regnet_y_400mf = register_regnet("regnet_y_400mf", REGNET_Y_400MF, "RegNetY-400MF (4.3 M parameters, 0.40 GMACs).")
regnet_y_1_6gf = register_regnet("regnet_y_1_6gf", REGNET_Y_1_6GF, "RegNetY-1.6GF (11.2 M parameters, 1.61 GMACs).")
