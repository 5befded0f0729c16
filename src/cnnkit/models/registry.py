"""One registry for the zoo: a dict of name -> builder and a decorator that refuses duplicates.

The bottom of `cnnkit.models`: it imports no family. `cnnkit.models.factory` (create_model,
list_models) sits on top and imports the zoo.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, overload

from torch import nn


ModelBuilder = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelBuilder)

_REGISTRY: dict[str, ModelBuilder] = {}


@overload
def register_model(name: str) -> Callable[[F], F]: ...


@overload
def register_model(name: str, builder: F) -> F: ...


def register_model(name: str, builder: F | None = None) -> F | Callable[[F], F]:
    """Register `builder` under `name`: `register_model("resnet18", build)` or `@register_model("resnet18")`.

    The name is an argument (no builder renames itself); a second model with that name is an error.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_model needs the model's name as its first argument, got {name!r}")

    def register(function: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = function
        return function

    return register if builder is None else register(builder)


def unregister_model(name: str) -> None:
    """Remove model `name` from the registry (for tests that register a throw-away model)."""
    if name not in _REGISTRY:
        raise ValueError(f"model {name!r} is not registered")
    del _REGISTRY[name]
