"""The inference core: one path from a finished run (or an exported model) to predictions.

`Predictor` (preprocessing, batching, backend, temperature, top-k; `Predictor.from_onnx` runs an
exported .onnx with ONNX Runtime, imported lazily; `Predictor.with_tta` averages flipped and turned views), `load_run` and the typed
`RunSummary` of a run directory, and bulk prediction over folders (`predict_files`).
"""

from cnnkit.data.decode import BadImageError
from cnnkit.inference.backends import Backend, TorchBackend
from cnnkit.inference.onnx_backend import OnnxBackend, onnx_metadata
from cnnkit.inference.predictor import ClassScore, Failure, Prediction, Predictor, Prepared
from cnnkit.inference.run import load_run
from cnnkit.inference.tta import TTA, TTABackend
from cnnkit.train.run_summary import RunSummary, read_summary, update_summary, write_summary

__all__ = [
    "Backend", "BadImageError", "ClassScore", "Failure", "OnnxBackend", "Prediction", "Predictor", "Prepared",
    "RunSummary", "TTA", "TTABackend", "TorchBackend", "load_run", "onnx_metadata", "read_summary", "update_summary", "write_summary",
]
