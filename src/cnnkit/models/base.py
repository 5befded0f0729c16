"""The contract every zoo model keeps, so fine-tuning, Grad-CAM and export need no special cases."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DefaultCfg:
    """What a model expects: input size (C, H, W), normalisation, and where its ends are.

    `first_conv` and `classifier` are dotted module paths inside the model (timm's convention),
    used to adapt input channels and to replace the head. `feature_layer` names the module whose
    output is the last spatial feature map (N, C, h, w): Grad-CAM's default target layer,
    feature extraction and embeddings read it ("" where a model has not declared it yet).
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    first_conv: str = "conv1"
    classifier: str = "fc"
    num_classes: int = 1000
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    feature_layer: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ClassifierModel(nn.Module):
    """Base of every zoo model: `forward = forward_head(forward_features(x))`.

    Subclasses implement `forward_features(x) -> (N, C, h, w)` (the last feature map, before
    pooling) and `forward_head(features, pre_logits=False) -> (N, num_classes)`; with
    `pre_logits=True` the head returns the pooled (N, C) vector fed to the classifier.
    """

    default_cfg: DefaultCfg

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
