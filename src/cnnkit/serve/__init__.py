"""The HTTP service of a trained model: `create_app(predictor, settings)` and `cnnkit serve`.

FastAPI + uvicorn on top of `Predictor`: dynamic batching, size and pixel limits enforced before
decoding, Prometheus metrics, bearer-key auth off loopback, Grad-CAM overlays through
`cnnkit.explain`, and a self-contained web page.
"""

from cnnkit.serve.app import create_app
from cnnkit.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
