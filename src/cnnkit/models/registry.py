"""One registry for the zoo: a dict of name -> builder and a decorator that refuses duplicates.

The bottom of `cnnkit.models`: it imports no family. `cnnkit.models.factory` (create_model,
list_models) sits on top and imports the zoo.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn


ModelBuilder = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelBuilder)

_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(builder: F) -> F:
    """Register `builder` under its function name; a second model with the same name is an error."""
    name = builder.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = builder
    return builder


def unregister_model(name: str) -> None:
    """Remove model `name` from the registry (for tests that register a throw-away model)."""
    if name not in _REGISTRY:
        raise ValueError(f"model {name!r} is not registered")
    del _REGISTRY[name]
