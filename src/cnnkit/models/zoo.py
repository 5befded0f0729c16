"""Imports every model family so that its `@register_model` builders enter the registry."""

from cnnkit.models import (  # noqa: F401
)
