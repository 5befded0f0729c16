"""Training augmentation as configuration: a list of named transform steps (from YAML) or a
named preset, checked against one registry (name -> transform class + parameter dataclass).

    augment: [{random_resized_crop: {scale: [0.7, 1.0]}}, {hflip: 0.5}, {vflip: 0.5},
              {rotate: 30}, {color_jitter: {brightness: 0.3, contrast: 0.3, saturation: 0.3, hue: 0.1}}]

A step is a name (`hflip`: its defaults), a one-key mapping to its parameters, or to one value
that sets its main parameter (`{rotate: 30}` = degrees 30). Sizes default to the model's input
size; the sample stage always ends at that size (a final resize + centre crop is added when no
step fixes it). `random_erasing` runs in the batch stage, after Normalize (as timm).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from cnnkit.data.pipeline import Pipeline, eval_scale_size
from cnnkit.data.transforms import Compose, MatchChannels, Normalize, Transform
from cnnkit.data.transforms_color import ColorJitter
from cnnkit.data.transforms_erasing import RandomErasing
from cnnkit.data.transforms_geometric import (
    CenterCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomRotation,
    RandomVerticalFlip,
    Resize,
)
from cnnkit.errors import CnnkitError
from cnnkit.models.base import DefaultCfg

Size = int | tuple[int, int] | None  # None: the model's input size


@dataclass(frozen=True)
class RandomResizedCropParams:
    """Parameters of `random_resized_crop` (torchvision's RandomResizedCrop)."""

    size: Size = None
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str | None = None  # None: the model's default_cfg.interpolation

    def arguments(self, cfg: DefaultCfg) -> dict[str, Any]:
        return {"size": _size(self.size, cfg), "scale": self.scale, "ratio": self.ratio,
                "interpolation": self.interpolation or cfg.interpolation}


@dataclass(frozen=True)
class ResizeParams:
    """Parameters of `resize` (antialiased; an int sets the shorter side)."""

    size: Size = None  # an int resizes the shorter side; None: floor(input size / crop_pct)
    interpolation: str | None = None

    def arguments(self, cfg: DefaultCfg) -> dict[str, Any]:
        return {"size": eval_scale_size(cfg) if self.size is None else self.size,
                "interpolation": self.interpolation or cfg.interpolation}


@dataclass(frozen=True)
class CenterCropParams:
    """Parameters of `center_crop`."""

    size: Size = None

    def arguments(self, cfg: DefaultCfg) -> dict[str, Any]:
        return {"size": _size(self.size, cfg)}


@dataclass(frozen=True)
class FlipParams:
    """Parameters of `hflip` and `vflip`: the flip probability."""

    p: float = 0.5

    def arguments(self, cfg: DefaultCfg) -> dict[str, Any]:
        return {"p": self.p}


@dataclass(frozen=True)
class RotateParams:
    """Parameters of `rotate` (torchvision's RandomRotation)."""

    degrees: float | tuple[float, float] = 0.0  # uniform in [-degrees, degrees] or in (min, max)
    interpolation: Literal["bilinear", "nearest"] = "bilinear"
    fill: float | tuple[float, ...] = 0.0

    def arguments(self, cfg: DefaultCfg) -> dict[str, Any]:
        return {"degrees": self.degrees, "interpolation": self.interpolation, "fill": self.fill}


@dataclass(frozen=True)
class ColorJitterParams:
    """Parameters of `color_jitter` (torchvision's ColorJitter ranges)."""

    brightness: float | tuple[float, float] = 0.0
    contrast: float | tuple[float, float] = 0.0
    saturation: float | tuple[float, float] = 0.0
    hue: float | tuple[float, float] = 0.0

    def arguments(self, cfg: DefaultCfg) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RandomErasingParams:
    """Parameters of `random_erasing` (Zhong et al. 2017), run after Normalize."""

    p: float = 0.25
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float | tuple[float, ...] | str = "random"  # "random": N(0, 1) noise after Normalize

    def arguments(self, cfg: DefaultCfg) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AugmentKind:
    """A registry row: the transform, its parameters, the parameter a bare value sets, the stage."""

    transform: type[Transform]
    params: type
    main: str | None
    stage: Literal["sample", "batch"] = "sample"


AUGMENTS: dict[str, AugmentKind] = {
    "random_resized_crop": AugmentKind(RandomResizedCrop, RandomResizedCropParams, "size"),
    "resize": AugmentKind(Resize, ResizeParams, "size"),
    "center_crop": AugmentKind(CenterCrop, CenterCropParams, "size"),
    "hflip": AugmentKind(RandomHorizontalFlip, FlipParams, "p"),
    "vflip": AugmentKind(RandomVerticalFlip, FlipParams, "p"),
    "rotate": AugmentKind(RandomRotation, RotateParams, "degrees"),
    "color_jitter": AugmentKind(ColorJitter, ColorJitterParams, None),  # a bare b: brightness=contrast=saturation=b
    "random_erasing": AugmentKind(RandomErasing, RandomErasingParams, "p", stage="batch"),
}
_FIXES_SIZE = ("random_resized_crop", "center_crop")


@dataclass(frozen=True)
class AugmentStep:
    """One configured transform: its registry name and its parameter dataclass."""

    name: str
    params: Any

    def build(self, cfg: DefaultCfg) -> Transform:
        try:
            return AUGMENTS[self.name].transform(**self.params.arguments(cfg))
        except (ValueError, TypeError) as error:
            raise CnnkitError(f"augment: {self.name}: {error}") from None


# The presets of `--augment`, as step lists (timm's defaults: random crop, flip, jitter 0.4).
PRESETS: dict[str, tuple[tuple[str, Any], ...]] = {
    "standard": (("random_resized_crop", {}), ("hflip", 0.5), ("color_jitter", 0.4)),
    "flip": (("random_resized_crop", {"scale": [1.0, 1.0]}), ("hflip", 0.5)),
    "none": (),
}


def parse_augment(value: str | Sequence[Any], *, source: str = "augment") -> tuple[AugmentStep, ...]:
    """A preset name or a YAML list of steps -> AugmentSteps; unknown names are an error listing
    the valid ones (`source` names the file or flag in the message)."""
    if isinstance(value, str):
        if value not in PRESETS:
            raise CnnkitError(f"{source}: unknown preset {value!r}; presets: {', '.join(PRESETS)} "
                              f"(or a list of steps from: {', '.join(AUGMENTS)})")
        return tuple(_step(name, params, source) for name, params in PRESETS[value])
    if not isinstance(value, Sequence):
        raise CnnkitError(f"{source}: expected a preset name or a list of steps, got {value!r}")
    steps = []
    for item in value:
        if isinstance(item, str):
            steps.append(_step(item, {}, source))
        elif isinstance(item, Mapping) and len(item) == 1:
            (name, params), = item.items()
            steps.append(_step(str(name), {} if params is None else params, source))
        else:
            raise CnnkitError(f"{source}: each step is a name or a one-key mapping {{name: parameters}}, got {item!r}")
    return tuple(steps)


def _step(name: str, given: Any, source: str) -> AugmentStep:
    kind = AUGMENTS.get(name)
    if kind is None:
        raise CnnkitError(f"{source}: unknown transform {name!r}; valid: {', '.join(AUGMENTS)}")
    valid = [f.name for f in fields(kind.params)]
    if not isinstance(given, Mapping):
        given = {kind.main: given} if kind.main else {"brightness": given, "contrast": given, "saturation": given}
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise CnnkitError(f"{source}: {name} has no parameter {', '.join(map(repr, unknown))}; "
                          f"its parameters: {', '.join(valid)}")
    hints = typing.get_type_hints(kind.params)
    values = {key: _typed(value, hints[key], f"{source}: {name}.{key}") for key, value in given.items()}
    step = AugmentStep(name, kind.params(**values))
    step.build(DefaultCfg())  # bad values (a scale above 1, a negative p) fail here, naming the step
    return step


def _typed(value: Any, hint: Any, where: str) -> Any:
    """YAML's lists become tuples, ints become floats where a float is expected; else an error."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for kind in allowed:
        origin = typing.get_origin(kind)
        if value is None and kind is type(None):
            return None
        if origin is tuple and isinstance(value, (list, tuple)) and all(_is_number(v) for v in value):
            count = len(typing.get_args(kind)) if Ellipsis not in typing.get_args(kind) else len(value)
            if len(value) == count:
                return tuple(float(v) if typing.get_args(kind)[0] is float else v for v in value)
        if kind is float and _is_number(value):
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if (kind is str or origin is Literal) and isinstance(value, str):
            if origin is Literal and value not in typing.get_args(kind):
                raise CnnkitError(f"{where}: must be one of {typing.get_args(kind)}, got {value!r}")
            return value
    raise CnnkitError(f"{where}: expected {_describe(hint)}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _describe(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _size(size: Size, cfg: DefaultCfg) -> int | tuple[int, int]:
    return tuple(cfg.input_size[1:]) if size is None else size


def _final_size(step: AugmentStep, cfg: DefaultCfg) -> tuple[int, int]:
    size = step.params.arguments(cfg)["size"]
    return (size, size) if isinstance(size, int) else tuple(size)


def augment_pipeline(cfg: DefaultCfg, steps: Sequence[AugmentStep]) -> Pipeline:
    """The training Pipeline of `steps` for a model's cfg: channel matching, the sample steps (a
    final Resize + CenterCrop to the input size when no crop fixes it), Normalize, batch steps.

    A crop to another size than the model's input is an error naming both.
    """
    channels, height, width = cfg.input_size
    sample: list[Transform] = [MatchChannels(channels)]
    sample += [s.build(cfg) for s in steps if AUGMENTS[s.name].stage == "sample"]
    batch: list[Transform] = [Normalize(cfg.mean, cfg.std)]
    batch += [s.build(cfg) for s in steps if AUGMENTS[s.name].stage == "batch"]
    crops = [s for s in steps if s.name in _FIXES_SIZE]
    sizes = [_final_size(s, cfg) for s in steps if s.name in (*_FIXES_SIZE, "resize")]
    if crops:
        if _final_size(crops[-1], cfg) != (height, width):
            raise CnnkitError(f"augment: {crops[-1].name} gives {_final_size(crops[-1], cfg)} but the model's input "
                              f"is {(height, width)}: leave its size out (it follows img_size) or set img_size")
    else:
        scale = eval_scale_size(cfg)
        sample += [Resize(scale, interpolation=cfg.interpolation), CenterCrop((height, width))]
        sizes.append((scale, scale) if isinstance(scale, int) else scale)
    hint_h, hint_w = max(s[0] for s in sizes), max(s[1] for s in sizes)
    return Pipeline(Compose(sample), Compose(batch), cfg.input_size, cfg.mean, cfg.std, (hint_w, hint_h))


def random_crops(steps: Sequence[AugmentStep]) -> bool:
    """Whether `steps` crop part of the image at random (then evaluation keeps the cfg's
    crop_pct, as timm; otherwise training sees whole images and so does evaluation)."""
    return any(s.name == "random_resized_crop" and s.params.scale[0] < 1.0 for s in steps)
