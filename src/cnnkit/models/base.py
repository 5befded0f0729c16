"""The contract every zoo model keeps, so fine-tuning, Grad-CAM and export need no special cases."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.feature_info import FeatureInfo
from cnnkit.models.heads import (
    HeadSpec,
    NoClassifier,
    build_head,
    final_linear_path,
    head_in_features,
    head_path_of,
    head_prefix,
    init_linear_default_,
    new_classifier,
    run_head,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DefaultCfg:
    """What a model expects: input size (C, H, W), normalisation, and where its ends are.

    `first_conv` and `classifier` are dotted module paths inside the model (timm's convention),
    used to adapt input channels and to replace the head. `feature_layer` names the module whose
    output is the last spatial feature map (N, C, h, w), the output of `forward_features`:
    Grad-CAM's default target layer, feature extraction and embeddings read it (every zoo model
    declares it; "" only for a model built outside the zoo).
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


def imagenet_to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Map ImageNet-normalised (N, 3, H, W) input to (pixel - 0.5) / 0.5, the Google weights' scaling."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x * (std / 0.5) + (mean - 0.5) / 0.5


class ClassifierModel(nn.Module):
    """Base of every zoo model: `forward = forward_head(forward_features(x))`.

    Subclasses implement `forward_features(x) -> (N, C, h, w)` (the last feature map, the output
    of the module at `default_cfg.feature_layer`) and hold their head at `head_path` (see
    `cnnkit.models.heads`); `forward_head(features, pre_logits=False)` pools (`pool_features`,
    global average by default) and runs the head -> (N, num_classes), or with `pre_logits=True`
    the (N, D) vector the final Linear reads. `num_classes` is `default_cfg.num_classes`, kept
    equal to the head's outputs by `reset_classifier`; 0 (timm's feature extractor) means no final
    layer, `forward` returning the (N, D) pre-logits.
    """

    default_cfg: DefaultCfg
    num_features: int
    # The multi-scale stages (module, channels, reduction), declared by each family from its config;
    # `cnnkit.models.features.FeatureExtractor` (create_model(..., features_only=True)) reads them.
    feature_info: FeatureInfo
    drop_rate: float = 0.0  # functional dropout before a bare Linear head (torchvision's ResNet)
    conv_classifier: bool = False  # classes from a 1x1 conv (SqueezeNet, timm's ResNetV2): no HeadSpec
    # Final Linear paths of optional auxiliary heads (GoogLeNet, Inception-v3 with aux_logits=True):
    # a weight file's aux heads are dropped when the model has none, or re-sized like the classifier.
    aux_classifiers: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return self.default_cfg.num_classes

    @property
    def head_path(self) -> str:
        """Dotted path of the whole head (`fc`, `classifier`); the final Linear is `default_cfg.classifier`."""
        return head_path_of(self.default_cfg.classifier)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> the head's input: global average pool and flatten -> (N, C)."""
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        head = self.get_submodule(self.head_path)
        return run_head(
            self.pool_features(x), head, drop_rate=self.drop_rate, training=self.training, pre_logits=pre_logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(
        self, num_classes: int, *, head: HeadSpec | None = None, generator: torch.Generator | None = None
    ) -> None:
        """A fresh classifier with `num_classes` outputs (timm's method), in place.

        `head=None` replaces only the final Linear (`default_cfg.classifier`); a `HeadSpec`
        replaces the whole head (keeping a ConvNeXt-style norm before its first Linear), e.g.
        `HeadSpec(hidden=(256,), dropout=0.4)`. `default_cfg.num_classes` / `.classifier` follow;
        `generator` makes the new weights reproducible (PyTorch's default Linear init).
        `num_classes=0`, as in timm, removes the final layer (a `NoClassifier`, an nn.Identity):
        `forward` then returns the (N, D) pre-logits, dropout included; a later
        `reset_classifier(k)` puts a k-class layer back.
        """
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise CnnkitError(f"num_classes must be an int >= 0, got {num_classes!r} ({type(self).__name__})")
        cfg = self.default_cfg
        like = next(self.parameters())
        if head is None:
            old = self.get_submodule(cfg.classifier)
            if not isinstance(old, (nn.Linear, nn.Conv2d, NoClassifier)):
                raise CnnkitError(f"{type(self).__name__}.{cfg.classifier} is a {type(old).__name__}, not a Linear")
            self.set_submodule(cfg.classifier, new_classifier(old, num_classes, like=like, generator=generator))
            classifier = cfg.classifier
        else:
            if not isinstance(head, HeadSpec):
                raise CnnkitError(f"head must be a cnnkit.models.heads.HeadSpec, got {type(head).__name__}")
            if self.conv_classifier:
                raise CnnkitError(f"{type(self).__name__} classifies with a 1x1 conv: it takes no HeadSpec head")
            path = self.head_path
            current = self.get_submodule(path)
            module = build_head(
                head_in_features(current),
                num_classes,
                head,
                prefix=head_prefix(current),
                bare=isinstance(current, (nn.Linear, NoClassifier)),
            ).to(device=like.device, dtype=like.dtype)
            for layer in module.modules():
                if isinstance(layer, nn.Linear):
                    init_linear_default_(layer, generator=generator)
            self.set_submodule(path, module)
            if not isinstance(module, nn.Sequential):
                self.drop_rate = head.dropout or 0.0
            classifier = final_linear_path(path, module)
        self.default_cfg = replace(cfg, num_classes=num_classes, classifier=classifier)


def require_classifier(model: nn.Module, purpose: str) -> None:
    """A CnnkitError when `model` is a zoo model without classes (`num_classes=0`, a feature
    extractor) and `purpose` (training, prediction, export) needs class scores."""
    if isinstance(model, ClassifierModel) and model.num_classes == 0:
        raise CnnkitError(
            f"{purpose} needs class scores, but this {type(model).__name__} has num_classes=0 (a feature "
            "extractor whose output is its pre-logits): call model.reset_classifier(k) first"
        )
