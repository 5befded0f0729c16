"""GoogLeNet / Inception-v1 (Szegedy et al. 2015, "Going Deeper with Convolutions", table 1).

Follows torchvision's port (BatchNorm after every conv, the "5x5" branch is a 3x3 conv) so its
weights load: 6,624,904 parameters without the auxiliary heads. `aux_logits=True` adds `aux1`
(after inception4a) and `aux2` (after inception4d); as in torchvision they are computed only in
training mode, where `forward` then returns `GoogLeNetOutputs(logits, aux_logits2, aux_logits1)`.
`transform_input=True` re-normalises ImageNet-normalised input to the [-1, 1] scaling that
torchvision's published weights were trained with (torchvision turns it on only with weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.layers.inception import BasicConv2d, Inception, InceptionWidths
from cnnkit.models.base import ClassifierModel, DefaultCfg, imagenet_to_unit_range
from cnnkit.models.feature_info import last_per_reduction
from cnnkit.models.heads import HeadSpec, build_head, new_classifier
from cnnkit.models.registry import register_model
from cnnkit.models.weight_init import init_trunc_normal_


@dataclass(frozen=True)
class InceptionRow:
    """One Inception module of the table; `pool_after` is the kernel of a following stride-2
    max-pool (0: none) and `aux_head` names an auxiliary classifier reading this module's output."""

    name: str
    widths: InceptionWidths
    pool_after: int = 0
    aux_head: str | None = None


GOOGLENET_TABLE = (
    InceptionRow("inception3a", InceptionWidths(64, 96, 128, 16, 32, 32)),
    InceptionRow("inception3b", InceptionWidths(128, 128, 192, 32, 96, 64), pool_after=3),
    InceptionRow("inception4a", InceptionWidths(192, 96, 208, 16, 48, 64), aux_head="aux1"),
    InceptionRow("inception4b", InceptionWidths(160, 112, 224, 24, 64, 64)),
    InceptionRow("inception4c", InceptionWidths(128, 128, 256, 24, 64, 64)),
    InceptionRow("inception4d", InceptionWidths(112, 144, 288, 32, 64, 64), aux_head="aux2"),
    InceptionRow("inception4e", InceptionWidths(256, 160, 320, 32, 128, 128), pool_after=2),
    InceptionRow("inception5a", InceptionWidths(256, 160, 320, 32, 128, 128)),
    InceptionRow("inception5b", InceptionWidths(384, 192, 384, 48, 128, 128)),
)


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output with auxiliary heads, in torchvision's field order."""

    logits: torch.Tensor
    aux_logits2: torch.Tensor
    aux_logits1: torch.Tensor


class GoogLeNetAux(nn.Module):
    """Auxiliary classifier: (N, C, h, w) -> 4x4 average -> 1x1 conv(128) -> fc1024 -> fc(num_classes)."""

    def __init__(self, in_channels: int, num_classes: int, drop_rate: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, 4)), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class GoogLeNet(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features (N, 1024, H/32, W/32)."""

    aux_classifiers = ("aux1.fc2", "aux2.fc2")

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        aux_logits: bool = False,
        transform_input: bool = False,
        drop_rate: float = 0.2,
        aux_drop_rate: float = 0.7,
    ) -> None:
        super().__init__()
        if transform_input and in_chans != 3:
            raise ValueError(f"transform_input needs 3 input channels, got in_chans={in_chans}")
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 224, 224),
            first_conv="conv1.conv",
            classifier="fc",
            num_classes=num_classes,
            feature_layer=GOOGLENET_TABLE[-1].name,
        )
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.drop_rate = drop_rate
        self.conv1 = BasicConv2d(in_chans, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        channels = self.conv3.conv.out_channels
        # (module, out_channels, stride) in `_run`'s order: the stem, then the table with its pools.
        stem = self.conv1.conv.out_channels
        layers = [("conv1", stem, 2), ("maxpool1", stem, 2), ("conv3", channels, 1), ("maxpool2", channels, 2)]
        aux_inputs: dict[str, int] = {}
        for pool_index, row in enumerate((r for r in GOOGLENET_TABLE if r.pool_after), start=3):
            self.add_module(f"maxpool{pool_index}", nn.MaxPool2d(row.pool_after, 2, ceil_mode=True))
        pool_index = 3
        for row in GOOGLENET_TABLE:
            self.add_module(row.name, Inception(channels, row.widths, large_kernel=3))
            channels = row.widths.out_channels
            layers.append((row.name, channels, 1))
            if row.pool_after:
                layers.append((f"maxpool{pool_index}", channels, 2))
                pool_index += 1
            if row.aux_head is not None:
                aux_inputs[row.aux_head] = channels
        if aux_logits:
            for name, width in aux_inputs.items():
                self.add_module(name, GoogLeNetAux(width, num_classes, aux_drop_rate))
        self.feature_info = last_per_reduction(layers)
        self.num_features = channels
        self.fc = build_head(channels, num_classes, HeadSpec(dropout=drop_rate), bare=True)
        init_trunc_normal_(self, std=0.01)

    def _run(self, x: torch.Tensor, aux_out: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """The feature path; fills `aux_out` with the auxiliary heads' logits when given."""
        if self.transform_input:
            x = imagenet_to_unit_range(x)
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        pool_index = 3
        for row in GOOGLENET_TABLE:
            x = getattr(self, row.name)(x)
            if aux_out is not None and row.aux_head is not None:
                aux_out[row.aux_head] = getattr(self, row.aux_head)(x)
            if row.pool_after:
                x = getattr(self, f"maxpool{pool_index}")(x)
                pool_index += 1
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)

    def reset_classifier(
        self, num_classes: int, *, head: HeadSpec | None = None, generator: torch.Generator | None = None
    ) -> None:
        """As ClassifierModel's; the auxiliary heads (when built) get `num_classes` outputs too."""
        super().reset_classifier(num_classes, head=head, generator=generator)
        for name in ("aux1", "aux2"):
            aux = getattr(self, name, None)
            if isinstance(aux, GoogLeNetAux):
                aux.fc2 = new_classifier(aux.fc2, num_classes, like=next(self.parameters()), generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:  # type: ignore[override]
        if not (self.training and self.aux_logits):
            return super().forward(x)
        aux: dict[str, torch.Tensor] = {}
        logits = self.forward_head(self._run(x, aux))
        return GoogLeNetOutputs(logits, aux["aux2"], aux["aux1"])


@register_model("googlenet")
def googlenet(
    num_classes: int = 1000,
    in_chans: int = 3,
    *,
    aux_logits: bool = False,
    transform_input: bool = False,
    drop_rate: float = 0.2,
) -> GoogLeNet:
    """GoogLeNet; overrides: aux_logits (training-time auxiliary heads), transform_input, drop_rate."""
    return GoogLeNet(
        num_classes, in_chans, aux_logits=aux_logits, transform_input=transform_input, drop_rate=drop_rate
    )
