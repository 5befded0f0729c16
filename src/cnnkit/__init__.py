"""cnnkit: a toolkit for convolutional neural networks, from pixels to decisions and back.

`import cnnkit` is cheap: the torch-based parts load on first use, so the NumPy engine
(`cnnkit.engine`) works on a machine without torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "cnnkit.models.factory",
    "list_models": "cnnkit.models.factory",
    "Predictor": "cnnkit.inference",
    "load_run": "cnnkit.inference",
    "device_info": "cnnkit.device_info",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")


__all__ = ["Predictor", "__version__", "create_model", "device_info", "list_models", "load_run"]
