"""The HTTP service of a trained model: `create_app(predictor, settings)` and `cnnkit serve`.

FastAPI + uvicorn on top of `Predictor`: dynamic batching, size and pixel limits enforced before
decoding, Prometheus metrics, bearer-key auth off loopback, Grad-CAM overlays through
`cnnkit.explain`, and a self-contained web page. FastAPI is imported on first use of
`create_app`, so other `cnnkit` commands do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cnnkit.serve.settings import ServeSettings

if TYPE_CHECKING:
    from cnnkit.serve.app import create_app

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from cnnkit.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'cnnkit.serve' has no attribute {name!r}")
