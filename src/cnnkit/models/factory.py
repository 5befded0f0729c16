"""`create_model` and `list_models`: the zoo's front door, on top of the registry and every family."""

from __future__ import annotations

import fnmatch
import inspect
import numbers
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models import zoo  # noqa: F401  (each family registers its builders when imported)
from cnnkit.models.base import ClassifierModel
from cnnkit.models.features import FeatureExtractor
from cnnkit.models.heads import HeadSpec
from cnnkit.models.registry import _REGISTRY, ModelBuilder


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of registered models, optionally filtered by a shell-style pattern."""
    names = sorted(_REGISTRY)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def create_model(
    name: str,
    num_classes: int | None = None,
    in_chans: int | None = None,
    pretrained: str | Path | None = None,
    *,
    head: HeadSpec | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build model `name`; `pretrained` is a local `.safetensors`/`.pth` file (never downloaded).

    `num_classes` and `in_chans` default to the model's own (1000 and 3 for ImageNet models,
    10 and 1 for lenet5); `num_classes=0` gives timm's feature extractor (no final layer: `forward`
    returns the (N, D) pre-logits; see `ClassifierModel.reset_classifier`); `overrides` are the
    keyword options of the model's builder.

    With `pretrained`, a classifier of another size is re-initialised and the first conv adapted
    to `in_chans` (see `cnnkit.models.pretrained.load_pretrained`; notes go to the 'cnnkit' logger).
    `head` (a `HeadSpec`, e.g. `HeadSpec(hidden=(256,), dropout=0.4)`) replaces the model's own
    head by a fresh one (`ClassifierModel.reset_classifier`), after any pretrained weights loaded.

    `features_only=True` (timm's) returns a `cnnkit.models.features.FeatureExtractor`: its forward
    gives the feature maps of the stages `out_indices` of `model.feature_info` (None: all;
    negative from the end), without the classifier; pretrained weights load before it is cut.
    """
    if name not in _REGISTRY:
        raise _unknown_model_error(name)
    builder = _REGISTRY[name]
    _check_overrides(name, builder, overrides)
    defaults = inspect.signature(builder).parameters
    num_classes = defaults["num_classes"].default if num_classes is None else num_classes
    in_chans = defaults["in_chans"].default if in_chans is None else in_chans
    for argument, value, least in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < least:
            raise CnnkitError(f"{argument} must be an int >= {least}, got {value!r} (model {name!r})")
    if out_indices is not None and not features_only:
        raise CnnkitError(f"out_indices needs features_only=True (model {name!r})")
    if features_only and head is not None:
        raise CnnkitError(f"features_only=True builds no classifier: it takes no head (model {name!r})")
    if head is not None and not isinstance(head, HeadSpec):
        raise CnnkitError(f"head must be a cnnkit.models.heads.HeadSpec, got {type(head).__name__} (model {name!r})")
    # num_classes=0 builds the model's own head, then removes its final layer (reset_classifier), before any
    # weights load: the file's classifier is dropped, not re-initialised for the default count. A
    # FeatureExtractor has no classifier either: features_only removes it the same way.
    headless = num_classes == 0 or features_only
    built_classes = num_classes or defaults["num_classes"].default
    try:
        if pretrained is None:
            model = builder(num_classes=built_classes, in_chans=in_chans, **overrides)
        else:
            from cnnkit.models.pretrained import build_with_weights

            model = build_with_weights(builder, Path(pretrained), num_classes=built_classes, in_chans=in_chans,
                                       remove_classifier=headless, **overrides)
    except ValueError as error:  # a builder refusing an option's value (transform_input with 1 channel)
        raise CnnkitError(f"model {name!r}: {error}") from error
    if head is not None or headless:
        if not isinstance(model, ClassifierModel):
            raise CnnkitError(f"model {name!r} is not a ClassifierModel: it takes no head, no num_classes=0 and "
                              "no features_only")
        model.reset_classifier(0 if headless else num_classes, head=head)
    if features_only:
        try:
            return FeatureExtractor(model, out_indices)
        except CnnkitError as error:
            raise CnnkitError(f"model {name!r}: {error}") from error
    return model


def _unknown_model_error(name: str) -> CnnkitError:
    """The error for a name the zoo lacks: similar names, then every name (a command-line user has
    no `cnnkit.list_models()` at hand)."""
    close = fnmatch.filter(_REGISTRY, f"*{name[:4]}*")[:5]
    hint = f"; similar: {', '.join(close)}" if close else ""
    return CnnkitError(f"unknown model {name!r}{hint}; the zoo's models: {', '.join(sorted(_REGISTRY))}")


def _check_overrides(name: str, builder: ModelBuilder, overrides: dict[str, Any]) -> None:
    parameters = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = set(parameters) - {"num_classes", "in_chans"}
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise CnnkitError(
            f"model {name!r} has no option {', '.join(unknown)}; its options: {', '.join(sorted(accepted)) or 'none'}"
        )


def parse_model_options(name: str, pairs: list[str]) -> dict[str, Any]:
    """`["drop_rate=0.2", ...]` -> {"drop_rate": 0.2}: each key an option of model `name`'s builder,
    each value read as YAML and checked against the option's type (its annotation or default)."""
    import yaml

    if name not in _REGISTRY:
        raise _unknown_model_error(name)
    builder = _REGISTRY[name]
    parameters = inspect.signature(builder).parameters
    try:
        hints = typing.get_type_hints(builder)
    except (NameError, TypeError):  # an annotation that cannot be resolved: fall back to defaults
        hints = {}
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CnnkitError(f"--model-opt {pair!r}: expected KEY=VALUE")
        value = yaml.safe_load(text) if text.strip() else None
        options[key] = value
        if key in ("num_classes", "in_chans"):
            raise CnnkitError(f"--model-opt {key}: set by the data, not a model option")
        if key in parameters and not _fits(value, hints.get(key, type(parameters[key].default))):
            raise CnnkitError(f"--model-opt {key}={text}: model {name!r} expects {hints.get(key, 'another type')}")
    _check_overrides(name, builder, options)
    return options


def _fits(value: Any, annotation: Any) -> bool:
    if annotation in (inspect.Parameter.empty, Any, type(None)):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (tuple, list):
        return isinstance(value, (list, tuple))
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation) if isinstance(annotation, type) else True
