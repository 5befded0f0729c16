"""The one classifier head of the zoo: how it is described (`HeadSpec`), built and run.

Every zoo model pools its last feature map to a (N, D) vector and feeds it to a head at one
attribute (`fc`, `classifier`): either a bare Linear (dropout then applied functionally, so the
state-dict names stay torchvision's `fc.weight`) or an nn.Sequential whose last module is the
final Linear (`default_cfg.classifier`). `pre_logits` is what that final Linear reads. A model with
`num_classes=0` (timm's feature extractor) holds a `NoClassifier` there instead of the final layer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.errors import CnnkitError

HeadActivation = Literal["relu", "relu6", "hardswish", "silu", "gelu", "tanh"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}
_HEAD_TEXT = re.compile(r"^(linear|mlp:\d+(,\d+)*)$")


class NoClassifier(nn.Identity):
    """The final classifier of a 0-class model (timm's `num_classes=0`): passes the (N, D) pre-logits
    through. It has no parameters; it keeps the width D and the layer's kind (Linear or 1x1 Conv2d,
    bias) so that `reset_classifier(k)` rebuilds a k-class layer in its place."""

    def __init__(self, in_features: int, *, conv: bool = False, has_bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.conv, self.has_bias = in_features, conv, has_bias

    @classmethod
    def replacing(cls, layer: nn.Linear | nn.Conv2d | NoClassifier) -> NoClassifier:
        """The stand-in for `layer` (a Linear, a 1x1 Conv2d, or already a NoClassifier)."""
        if isinstance(layer, NoClassifier):
            return layer
        if isinstance(layer, nn.Conv2d):
            if layer.kernel_size != (1, 1) or layer.stride != (1, 1) or layer.padding != (0, 0):
                raise CnnkitError(f"a conv classifier must be 1x1 (stride 1, no padding) to be removed, got {layer}")
            return cls(layer.in_channels, conv=True, has_bias=layer.bias is not None)
        return cls(layer.in_features, has_bias=layer.bias is not None)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, conv={self.conv}"


@dataclass(frozen=True)
class HeadSpec:
    """A classifier head on the pooled (N, D) features: `hidden` Linear widths, each followed by
    `activation` and Dropout(`dropout`), then the final Linear to the classes.

    Without hidden layers, Dropout(`dropout`) precedes the final Linear (torchvision's MobileNet /
    EfficientNet heads). `dropout=None` places no Dropout modules at all (LeNet-5); a float, even
    0.0, keeps them, so that module indices (`classifier.6` of VGG) do not depend on its value.
    The soil recipe's Linear(2048,256)-ReLU-Dropout(0.4)-Linear(256,6) is `HeadSpec((256,), 0.4)`.
    """

    hidden: tuple[int, ...] = ()
    dropout: float | None = None
    activation: HeadActivation = "relu"

    def __post_init__(self) -> None:
        if not isinstance(self.hidden, tuple) or any(
            not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in self.hidden
        ):
            raise CnnkitError(f"head: hidden widths must be a tuple of positive ints, got {self.hidden!r}")
        if self.dropout is not None and (isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float))
                                         or not 0.0 <= self.dropout < 1.0):
            raise CnnkitError(f"head: dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.activation, str) or self.activation not in _ACTIVATIONS:
            raise CnnkitError(f"head: activation must be one of {get_args(HeadActivation)}, got {self.activation!r}")

    @classmethod
    def parse(cls, text: str, *, dropout: float | None = None) -> HeadSpec:
        """`"linear"` -> one Linear; `"mlp:256"` / `"mlp:512,256"` -> hidden ReLU layers (`--head`)."""
        cleaned = text.strip().lower().replace(" ", "")
        if not _HEAD_TEXT.match(cleaned):
            raise CnnkitError(f"--head: expected 'linear' or 'mlp:WIDTH[,WIDTH...]' (e.g. mlp:256), got {text!r}")
        hidden = tuple(int(w) for w in cleaned.partition(":")[2].split(",")) if cleaned != "linear" else ()
        return cls(hidden=hidden, dropout=dropout)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (for a run's summary); `from_dict` reads them back."""
        return {"hidden": list(self.hidden), "dropout": self.dropout, "activation": self.activation}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "head") -> HeadSpec:
        """The spec stored by `to_dict`; unknown or missing fields are a CnnkitError naming `source`."""
        fields = {"hidden", "dropout", "activation"}
        unknown = sorted(set(data) - fields)
        if unknown or "hidden" not in data:
            problem = f"unknown fields {unknown}" if unknown else "no 'hidden' field"
            raise CnnkitError(f"{source}: {problem} (a head has {sorted(fields)})")
        hidden = data["hidden"]
        if not isinstance(hidden, (list, tuple)):
            raise CnnkitError(f"{source}: 'hidden' must be a list of widths, got {hidden!r}")
        return cls(tuple(hidden), data.get("dropout"), data.get("activation", "relu"))

    def describe(self) -> str:
        """The `--head` text of this spec (`linear`, `mlp:256`)."""
        return "mlp:" + ",".join(str(w) for w in self.hidden) if self.hidden else "linear"


def build_head(
    in_features: int,
    num_classes: int,
    spec: HeadSpec,
    *,
    prefix: Sequence[nn.Module] = (),
    bare: bool = False,
) -> nn.Module:
    """The head module: (N, in_features) -> (N, num_classes); its last module is the final Linear
    (a `NoClassifier` when `num_classes` is 0: the head then ends on the pre-logits).

    `prefix` modules run first (ConvNeXt's LayerNorm + Flatten). `bare=True` returns a plain
    nn.Linear when the spec has no hidden layers and there is no prefix (dropout is then applied
    by `run_head`, as torchvision's ResNet names need).
    """
    if bare and not spec.hidden and not prefix:
        return _final_layer(in_features, num_classes)
    layers: list[nn.Module] = list(prefix)
    width = in_features
    for hidden in spec.hidden:
        layers += [nn.Linear(width, hidden), _ACTIVATIONS[spec.activation]()]
        if spec.dropout is not None:
            layers.append(nn.Dropout(spec.dropout))
        width = hidden
    if not spec.hidden and spec.dropout is not None:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(_final_layer(width, num_classes))
    return nn.Sequential(*layers)


def _final_layer(in_features: int, num_classes: int) -> nn.Linear | NoClassifier:
    return nn.Linear(in_features, num_classes) if num_classes else NoClassifier(in_features)


def run_head(
    x: torch.Tensor, head: nn.Module, *, drop_rate: float, training: bool, pre_logits: bool
) -> torch.Tensor:
    """Pooled (N, D) features -> pre-logits (what the final Linear reads) or (N, num_classes).

    A bare Linear head gets functional dropout at `drop_rate`; a Sequential head carries its own.
    """
    if isinstance(head, nn.Sequential):
        x = head[:-1](x)
        return x if pre_logits else head[-1](x)
    if drop_rate > 0:
        x = F.dropout(x, p=drop_rate, training=training)
    return x if pre_logits else head(x)


def head_path_of(classifier_path: str) -> str:
    """The head module's path from the final Linear's (`classifier.6` -> `classifier`, `fc` -> `fc`)."""
    parent, _, last = classifier_path.rpartition(".")
    return parent if parent and last.isdigit() else classifier_path


def final_linear_path(head_path: str, head: nn.Module) -> str:
    """`default_cfg.classifier` of a head at `head_path`: itself if bare, else its last index."""
    return f"{head_path}.{len(head) - 1}" if isinstance(head, nn.Sequential) else head_path


def head_prefix(head: nn.Module) -> list[nn.Module]:
    """The modules of a Sequential head before its first Linear, Dropouts left out (kept on reset)."""
    if not isinstance(head, nn.Sequential):
        return []
    prefix: list[nn.Module] = []
    for module in head:
        if isinstance(module, (nn.Linear, NoClassifier)):
            break
        if not isinstance(module, nn.Dropout):
            prefix.append(module)
    return prefix


def head_in_features(head: nn.Module) -> int:
    """Input width of a head: the in_features of its first Linear (or of a 0-class head's NoClassifier)."""
    first = next((m for m in head.modules() if isinstance(m, (nn.Linear, NoClassifier))), None)
    if first is None:
        raise ValueError(f"head {type(head).__name__} holds no nn.Linear")
    return first.in_features


def init_linear_default_(layer: nn.Linear | nn.Conv2d, *, generator: torch.Generator | None = None) -> None:
    """PyTorch's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, from `generator`."""
    bound = 1.0 / math.sqrt(math.prod(layer.weight.shape[1:]))
    with torch.no_grad():
        for tensor in (layer.weight, layer.bias):
            if tensor is not None:
                nn.init.uniform_(tensor, -bound, bound, generator=generator)


def new_classifier(
    old: nn.Linear | nn.Conv2d | NoClassifier,
    num_classes: int,
    *,
    like: torch.Tensor,
    generator: torch.Generator | None = None,
) -> nn.Linear | nn.Conv2d | NoClassifier:
    """A layer like `old` (bias; device and dtype of `like`, a parameter of the model) with
    `num_classes` outputs and PyTorch's default init; a `NoClassifier` for 0 classes."""
    if num_classes == 0:
        return NoClassifier.replacing(old)
    factory = {"device": like.device, "dtype": like.dtype}
    if isinstance(old, NoClassifier):
        shape = (old.in_features, num_classes)
        layer: nn.Linear | nn.Conv2d = (nn.Conv2d(*shape, 1, bias=old.has_bias, **factory) if old.conv
                                        else nn.Linear(*shape, bias=old.has_bias, **factory))
    elif isinstance(old, nn.Linear):
        layer = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, **factory)
    else:
        layer = nn.Conv2d(
            old.in_channels, num_classes, old.kernel_size, old.stride, old.padding,
            dilation=old.dilation, bias=old.bias is not None, **factory,
        )
    init_linear_default_(layer, generator=generator)
    return layer
