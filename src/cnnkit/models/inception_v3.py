"""Inception-v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture", fig. 5-7, table 1).

Every mixed module is DATA: a tuple of branches, each a chain of conv-BN-ReLU units, optionally
preceded by a pooling and optionally ending in parallel "split" convs (1x3 and 3x1, fig. 7) whose
outputs are concatenated. The A-E factories below give torchvision's modules with its names
(`Mixed_5b.branch5x5_1.conv`, ...) so its weights load: 23,834,568 parameters without the
auxiliary head. `aux_logits=True` adds `AuxLogits` (on Mixed_6e, training mode only, returning
`InceptionOutputs(logits, aux_logits)`). `transform_input` defaults to False as in torchvision
without weights; set it for torchvision's published weights, which expect [-1, 1] scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.layers.inception import BasicConv2d, KernelSize
from cnnkit.models.base import ClassifierModel, DefaultCfg, imagenet_to_unit_range
from cnnkit.models.feature_info import last_per_reduction
from cnnkit.models.heads import HeadSpec, build_head, new_classifier
from cnnkit.models.registry import register_model
from cnnkit.models.weight_init import init_trunc_normal_


@dataclass(frozen=True)
class Conv:
    """One conv-BN-ReLU unit, registered under `name`."""

    name: str
    out_channels: int
    kernel_size: KernelSize
    stride: int = 1
    padding: KernelSize = 0

    def build(self, in_channels: int) -> BasicConv2d:
        """The unit reading `in_channels` channels."""
        return BasicConv2d(in_channels, self.out_channels, self.kernel_size, self.stride, self.padding)


@dataclass(frozen=True)
class Branch:
    """`pool` ("avg": 3x3/1 pad 1, "max": 3x3/2) -> `convs` in sequence -> `split` convs in parallel."""

    convs: tuple[Conv, ...] = ()
    split: tuple[Conv, ...] = ()
    pool: Literal["avg", "max"] | None = None


Mixed = tuple[Branch, ...]


def _conv_1xn(name: str, width: int, n: int, *, transpose: bool = False) -> Conv:
    """A 1xn (or nx1 with `transpose`) conv that keeps the grid size."""
    kernel, padding = ((n, 1), (n // 2, 0)) if transpose else ((1, n), (0, n // 2))
    return Conv(name, width, kernel, padding=padding)


def inception_a(pool_features: int) -> Mixed:
    """35x35 module (fig. 5): the 5x5 factorised into two 3x3 on one branch."""
    return (
        Branch((Conv("branch1x1", 64, 1),)),
        Branch((Conv("branch5x5_1", 48, 1), Conv("branch5x5_2", 64, 5, padding=2))),
        Branch(
            (
                Conv("branch3x3dbl_1", 64, 1),
                Conv("branch3x3dbl_2", 96, 3, padding=1),
                Conv("branch3x3dbl_3", 96, 3, padding=1),
            )
        ),
        Branch((Conv("branch_pool", pool_features, 1),), pool="avg"),
    )


def inception_b() -> Mixed:
    """35 -> 17 grid reduction (fig. 10): strided convs beside a strided max-pool."""
    return (
        Branch((Conv("branch3x3", 384, 3, stride=2),)),
        Branch(
            (
                Conv("branch3x3dbl_1", 64, 1),
                Conv("branch3x3dbl_2", 96, 3, padding=1),
                Conv("branch3x3dbl_3", 96, 3, stride=2),
            )
        ),
        Branch(pool="max"),
    )


def inception_c(c7: int) -> Mixed:
    """17x17 module (fig. 6): 7x7 factorised into 1x7 and 7x1 convs of width `c7`."""
    return (
        Branch((Conv("branch1x1", 192, 1),)),
        Branch(
            (
                Conv("branch7x7_1", c7, 1),
                _conv_1xn("branch7x7_2", c7, 7),
                _conv_1xn("branch7x7_3", 192, 7, transpose=True),
            )
        ),
        Branch(
            (
                Conv("branch7x7dbl_1", c7, 1),
                _conv_1xn("branch7x7dbl_2", c7, 7, transpose=True),
                _conv_1xn("branch7x7dbl_3", c7, 7),
                _conv_1xn("branch7x7dbl_4", c7, 7, transpose=True),
                _conv_1xn("branch7x7dbl_5", 192, 7),
            )
        ),
        Branch((Conv("branch_pool", 192, 1),), pool="avg"),
    )


def inception_d() -> Mixed:
    """17 -> 8 grid reduction."""
    return (
        Branch((Conv("branch3x3_1", 192, 1), Conv("branch3x3_2", 320, 3, stride=2))),
        Branch(
            (
                Conv("branch7x7x3_1", 192, 1),
                _conv_1xn("branch7x7x3_2", 192, 7),
                _conv_1xn("branch7x7x3_3", 192, 7, transpose=True),
                Conv("branch7x7x3_4", 192, 3, stride=2),
            )
        ),
        Branch(pool="max"),
    )


def inception_e() -> Mixed:
    """8x8 module (fig. 7): the 3x3s split into parallel 1x3 and 3x1 outputs."""
    return (
        Branch((Conv("branch1x1", 320, 1),)),
        Branch(
            (Conv("branch3x3_1", 384, 1),),
            split=(_conv_1xn("branch3x3_2a", 384, 3), _conv_1xn("branch3x3_2b", 384, 3, transpose=True)),
        ),
        Branch(
            (Conv("branch3x3dbl_1", 448, 1), Conv("branch3x3dbl_2", 384, 3, padding=1)),
            split=(_conv_1xn("branch3x3dbl_3a", 384, 3), _conv_1xn("branch3x3dbl_3b", 384, 3, transpose=True)),
        ),
        Branch((Conv("branch_pool", 192, 1),), pool="avg"),
    )


class MixedModule(nn.Module):
    """(N, C_in, H, W) -> (N, out_channels, H', W'): the branches of a `Mixed` spec, concatenated."""

    def __init__(self, in_channels: int, branches: Mixed) -> None:
        super().__init__()
        self.branches = branches
        self.out_channels = 0
        for branch in branches:
            channels = in_channels
            for conv in branch.convs:
                self._add_conv(conv, channels)
                channels = conv.out_channels
            for conv in branch.split:
                self._add_conv(conv, channels)
            self.out_channels += sum(c.out_channels for c in branch.split) if branch.split else channels

    def _add_conv(self, conv: Conv, in_channels: int) -> None:
        self.add_module(conv.name, conv.build(in_channels))

    def _branch(self, x: torch.Tensor, branch: Branch) -> torch.Tensor:
        if branch.pool == "avg":
            x = F.avg_pool2d(x, 3, stride=1, padding=1)
        elif branch.pool == "max":
            x = F.max_pool2d(x, 3, stride=2)
        for conv in branch.convs:
            x = getattr(self, conv.name)(x)
        if branch.split:
            x = torch.cat([getattr(self, conv.name)(x) for conv in branch.split], 1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._branch(x, branch) for branch in self.branches], 1)


STEM = (
    (Conv("Conv2d_1a_3x3", 32, 3, stride=2), Conv("Conv2d_2a_3x3", 32, 3), Conv("Conv2d_2b_3x3", 64, 3, padding=1)),
    (Conv("Conv2d_3b_1x1", 80, 1), Conv("Conv2d_4a_3x3", 192, 3)),
)
"""Stem conv groups, each followed by a 3x3/2 max-pool (`maxpool1`, `maxpool2`)."""

MIXED_TABLE: tuple[tuple[str, Mixed], ...] = (
    ("Mixed_5b", inception_a(32)),
    ("Mixed_5c", inception_a(64)),
    ("Mixed_5d", inception_a(64)),
    ("Mixed_6a", inception_b()),
    ("Mixed_6b", inception_c(128)),
    ("Mixed_6c", inception_c(160)),
    ("Mixed_6d", inception_c(160)),
    ("Mixed_6e", inception_c(192)),
    ("Mixed_7a", inception_d()),
    ("Mixed_7b", inception_e()),
    ("Mixed_7c", inception_e()),
)
AUX_AFTER = "Mixed_6e"


class InceptionOutputs(NamedTuple):
    """Training-mode output with the auxiliary head, in torchvision's field order."""

    logits: torch.Tensor
    aux_logits: torch.Tensor


class InceptionAux(nn.Module):
    """(N, 768, 17, 17) -> 5x5/3 average -> conv1x1(128) -> conv5x5(768) -> global average -> fc."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)
        self.fc.stddev = 0.001  # type: ignore[assignment]  # read by init_trunc_normal_, as in torchvision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(F.avg_pool2d(x, 5, stride=3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InceptionV3(ClassifierModel):
    """(N, in_chans, H, W) -> (N, num_classes); features (N, 2048, 8, 8) at 299.

    H, W >= 75; the auxiliary head needs >= 299 (its 5x5 conv reads a pooled 17x17 Mixed_6e).
    """

    aux_classifiers = ("AuxLogits.fc",)

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        aux_logits: bool = False,
        transform_input: bool = False,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        if transform_input and in_chans != 3:
            raise ValueError(f"transform_input needs 3 input channels, got in_chans={in_chans}")
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 299, 299),
            first_conv="Conv2d_1a_3x3.conv",
            classifier="fc",
            num_classes=num_classes,
            crop_pct=299 / 342,  # torchvision's evaluation transform: resize 342, centre crop 299
            feature_layer=MIXED_TABLE[-1][0],
        )
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.drop_rate = drop_rate
        channels = in_chans
        layers: list[tuple[str, int, int]] = []  # (module, out_channels, stride) in `_run`'s order
        for index, group in enumerate(STEM, start=1):
            for conv in group:
                self.add_module(conv.name, conv.build(channels))
                channels = conv.out_channels
                layers.append((conv.name, channels, conv.stride))
            self.add_module(f"maxpool{index}", nn.MaxPool2d(3, 2))
            layers.append((f"maxpool{index}", channels, 2))
        for name, branches in MIXED_TABLE:
            mixed = MixedModule(channels, branches)
            self.add_module(name, mixed)
            channels = mixed.out_channels
            # A grid reduction (Mixed_6a, Mixed_7a) has a stride-2 max-pool branch.
            layers.append((name, channels, 2 if any(branch.pool == "max" for branch in branches) else 1))
            if name == AUX_AFTER and aux_logits:
                self.AuxLogits = InceptionAux(channels, num_classes)
        self.feature_info = last_per_reduction(layers)
        self.num_features = channels
        self.fc = build_head(channels, num_classes, HeadSpec(dropout=drop_rate), bare=True)
        init_trunc_normal_(self, std=0.1)

    def _run(self, x: torch.Tensor, aux_out: list[torch.Tensor] | None) -> torch.Tensor:
        """The feature path; appends the auxiliary logits to `aux_out` when given."""
        if self.transform_input:
            x = imagenet_to_unit_range(x)
        for index, group in enumerate(STEM, start=1):
            for conv in group:
                x = getattr(self, conv.name)(x)
            x = getattr(self, f"maxpool{index}")(x)
        for name, _ in MIXED_TABLE:
            x = getattr(self, name)(x)
            if aux_out is not None and name == AUX_AFTER:
                aux_out.append(self.AuxLogits(x))
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)

    def reset_classifier(
        self, num_classes: int, *, head: HeadSpec | None = None, generator: torch.Generator | None = None
    ) -> None:
        """As ClassifierModel's; the auxiliary head (when built) gets `num_classes` outputs too."""
        super().reset_classifier(num_classes, head=head, generator=generator)
        if isinstance(getattr(self, "AuxLogits", None), InceptionAux):
            self.AuxLogits.fc = new_classifier(
                self.AuxLogits.fc, num_classes, like=next(self.parameters()), generator=generator
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | InceptionOutputs:  # type: ignore[override]
        if not (self.training and self.aux_logits):
            return super().forward(x)
        aux: list[torch.Tensor] = []
        logits = self.forward_head(self._run(x, aux))
        return InceptionOutputs(logits, aux[0])


@register_model("inception_v3")
def inception_v3(
    num_classes: int = 1000,
    in_chans: int = 3,
    *,
    aux_logits: bool = False,
    transform_input: bool = False,
    drop_rate: float = 0.5,
) -> InceptionV3:
    """Inception-v3 (299x299 input); overrides: aux_logits, transform_input, drop_rate."""
    return InceptionV3(
        num_classes, in_chans, aux_logits=aux_logits, transform_input=transform_input, drop_rate=drop_rate
    )
