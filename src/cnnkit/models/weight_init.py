"""Weight initialisations of the classic zoo, as torchvision applies them (so fresh models train alike).

Kaiming normal for convs (He et al. 2015, "Delving Deep into Rectifiers"), norms at scale 1 /
shift 0, and the truncated normals of the Inception family.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

_NORMS = (nn.BatchNorm2d, nn.GroupNorm)


def init_kaiming_(
    model: nn.Module,
    *,
    mode: Literal["fan_in", "fan_out"] = "fan_out",
    linear_std: float | None = None,
) -> None:
    """Kaiming-normal convs (bias 0) and norms at 1/0.

    Linear layers get N(0, linear_std) weights and zero bias when `linear_std` is given (VGG);
    with `None` they keep PyTorch's default init (ResNet, DenseNet).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


def init_trunc_normal_(model: nn.Module, std: float) -> None:
    """Conv and Linear weights ~ N(0, std) truncated to [-2, 2], norms 1/0 (GoogLeNet, Inception-v3).

    A module with a `stddev` attribute uses that instead (Inception-v3's auxiliary head).
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=float(getattr(m, "stddev", std)), a=-2, b=2)
        elif isinstance(m, _NORMS) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_mobilenet_weights(model: nn.Module, *, linear_init: Literal["normal", "uniform"] = "normal") -> None:
    """torchvision's MobileNet/EfficientNet init: He-normal (fan_out) convs, unit norms, small Linear.

    `linear_init="normal"`: N(0, 0.01) (MobileNetV2/V3); `"uniform"`: U(+-1/sqrt(out_features)) (EfficientNet).
    """
    if linear_init not in ("normal", "uniform"):
        raise ValueError(f"linear_init must be 'normal' or 'uniform', got {linear_init!r}")
    init_kaiming_(model, mode="fan_out", linear_std=0.01 if linear_init == "normal" else None)
    if linear_init == "uniform":
        for m in model.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / m.out_features**0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)
