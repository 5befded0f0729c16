"""Small CNNs for the demo and trainer: `compact_cnn` (wafer maps) and `mnist_cnn` (digits).

Both are one `CompactCNN` read from a `CompactCnnConfig`: conv-BN-ReLU stages (a 2x2 max-pool
after some), an adaptive average pool to a `head_grid` x `head_grid` map, optional hidden
fully-connected layers with dropout, and a final Linear `classifier`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from cnnkit.layers.conv_norm_act import ConvNormAct, NormFactory
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.feature_info import sequential_feature_info
from cnnkit.models.heads import HeadSpec, build_head, final_linear_path
from cnnkit.models.registry import register_model
from cnnkit.models.weight_init import init_kaiming_


@dataclass(frozen=True)
class CompactCnnConfig:
    """Stage widths (3x3 conv-BN-ReLU each, the conv with a bias if `conv_bias`), which stages end
    in a 2x2 max-pool, the head's pooled grid and its hidden widths (a `HeadSpec`)."""

    widths: tuple[int, ...]
    pool_after: tuple[bool, ...]
    head_grid: int = 1
    hidden: tuple[int, ...] = ()
    conv_bias: bool = False

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.pool_after):
            raise ValueError(f"widths {self.widths} and pool_after {self.pool_after} differ in length")


# 5 conv + BN + GAP + linear; three poolings take 32x32 wafer maps to a 4x4 grid for the last two convs.
COMPACT_CNN = CompactCnnConfig((32, 64, 128, 128, 256), (True, True, True, False, False))

# The MNIST BN-CNN as commonly printed: 3x3 convs 32-64-128 (with bias) + BN + ReLU + 2x2 max-pool
# (28 -> 14 -> 7 -> 3), pooled to 2x2 = 512 features, FC 512-128-10: 160,074 parameters. (The
# 138,442 usually printed beside that code is not its count: worked-examples.md in the references.)
MNIST_CNN = CompactCnnConfig((32, 64, 128), (True, True, True), head_grid=2, hidden=(128,), conv_bias=True)


class CompactCNN(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features (N, widths[-1], h, w)."""

    def __init__(
        self,
        config: CompactCnnConfig,
        num_classes: int,
        in_chans: int,
        input_size: int,
        *,
        norm_layer: NormFactory = nn.BatchNorm2d,
        drop_rate: float = 0.2,
    ) -> None:
        super().__init__()
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, input_size, input_size),
            mean=(0.5,) * in_chans,
            std=(0.5,) * in_chans,
            first_conv="features.0.0",
            classifier="classifier",
            num_classes=num_classes,
            crop_pct=1.0,
            feature_layer="features",
        )
        layers: list[nn.Module] = []
        shapes: list[tuple[int, int]] = []  # (out_channels, stride) of each layer
        channels = in_chans
        for width, pool in zip(config.widths, config.pool_after):
            layers.append(ConvNormAct(channels, width, 3, norm_layer=norm_layer, bias=config.conv_bias))
            shapes.append((width, 1))
            if pool:
                layers.append(nn.MaxPool2d(2))
                shapes.append((width, 2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.feature_info = sequential_feature_info("features", shapes)
        self.head_pool = nn.AdaptiveAvgPool2d(config.head_grid)
        self.num_features = channels
        self.drop_rate = drop_rate
        head = HeadSpec(config.hidden, drop_rate)
        self.classifier = build_head(channels * config.head_grid**2, num_classes, head, bare=True)
        self.default_cfg = replace(self.default_cfg, classifier=final_linear_path("classifier", self.classifier))
        init_kaiming_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.head_pool(x), 1)


@register_model("compact_cnn")
def compact_cnn(
    num_classes: int = 9,
    in_chans: int = 1,
    *,
    norm_layer: NormFactory | None = None,
    drop_rate: float = 0.2,
) -> CompactCNN:
    """5 conv + BN + GAP + linear (32-64-128-128-256), default input 1x32x32; any size >= 8 works.

    The default 9 classes are the WM-811K wafer-map failure types. Overrides: norm_layer, drop_rate.
    """
    norm = norm_layer or nn.BatchNorm2d
    return CompactCNN(COMPACT_CNN, num_classes, in_chans, 32, norm_layer=norm, drop_rate=drop_rate)


@register_model("mnist_cnn")
def mnist_cnn(
    num_classes: int = 10,
    in_chans: int = 1,
    *,
    norm_layer: NormFactory | None = None,
    drop_rate: float = 0.25,
) -> CompactCNN:
    """Three conv-BN-ReLU-maxpool blocks (32-64-128), FC 512-128-10: 160,074 parameters on 1x28x28.

    Overrides: norm_layer, drop_rate.
    """
    norm = norm_layer or nn.BatchNorm2d
    return CompactCNN(MNIST_CNN, num_classes, in_chans, 28, norm_layer=norm, drop_rate=drop_rate)
