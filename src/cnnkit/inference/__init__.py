"""The inference core: one path from a finished run (or an exported model) to predictions.

`Predictor` (preprocessing, batching, backend, temperature, top-k), `load_run` and the typed
`RunSummary` of a run directory, and bulk prediction over folders (`predict_files`).
"""

from cnnkit.data.decode import BadImageError
from cnnkit.inference.backends import Backend, TorchBackend
from cnnkit.inference.predictor import ClassScore, Failure, Prediction, Predictor, Prepared
from cnnkit.inference.run import load_run
from cnnkit.train.run_summary import RunSummary, read_summary, update_summary, write_summary

__all__ = [
    "Backend", "BadImageError", "ClassScore", "Failure", "Prediction", "Predictor", "Prepared", "RunSummary",
    "TorchBackend", "load_run", "read_summary", "update_summary", "write_summary",
]
