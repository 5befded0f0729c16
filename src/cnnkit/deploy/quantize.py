"""Static post-training INT8 quantization with ONNX Runtime: QDQ format, per-channel int8 weights,
uint8 activations calibrated on real images (minmax, entropy or percentile ranges).

Affine quantization (Jacob et al. 2018): r = s·(q − z); for a range [rmin, rmax] widened to hold 0,
s = (rmax − rmin)/(qmax − qmin) and z = round(qmin − rmin/s); symmetric weights use z = 0.
`torch.ao.quantization` is deprecated, so nothing here builds on it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cnnkit.device_info import device_info
from cnnkit.errors import CnnkitError

QuantizeMethod = Literal["minmax", "entropy", "percentile"]
METHODS: tuple[QuantizeMethod, ...] = ("minmax", "entropy", "percentile")
# Ops whose weights get int8: the compute-heavy ones (activations around them get uint8 QDQ pairs).
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
# Entropy (KL) calibration as TensorRT's (Migacz 2017): a 2048-bin histogram, thresholds searched
# down to 1/16 of the range. ONNX Runtime's own default (128 bins, 128 quantized bins) leaves one
# candidate, the full range: its entropy calibration then equals minmax, and quantize_static has no
# option to change the bins, so cnnkit runs that calibrator itself.
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128
log = logging.getLogger("cnnkit")


@contextlib.contextmanager
def _ort_prints_to_log() -> Iterator[None]:
    """ONNX Runtime's histogram calibrators `print` their progress ("Collecting tensor data ...");
    it goes to the 'cnnkit' logger at DEBUG instead of into the command's report."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        for line in printed.getvalue().splitlines():
            log.debug("onnxruntime: %s", line)


@dataclass(frozen=True)
class QParams:
    """Scale and zero point of one quantized tensor (arrays: one entry per channel when per-channel)."""

    scale: np.ndarray
    zero_point: np.ndarray


def affine_qparams(rmin: float, rmax: float, *, qmin: int, qmax: int, symmetric: bool = False) -> QParams:
    """The textbook scale and zero point for real range [rmin, rmax] on integers [qmin, qmax]."""
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    if symmetric:
        rmax = max(abs(rmin), abs(rmax))
        rmin = -rmax
    scale = (rmax - rmin) / (qmax - qmin)
    if scale == 0:
        return QParams(np.array(1.0, np.float32), np.array(0))
    zero = round((qmin + qmax) / 2) if symmetric else round(qmin - rmin / scale)
    return QParams(np.array(scale, np.float32), np.array(zero))


class _BatchReader:
    """ONNX Runtime's CalibrationDataReader protocol over (N, C, H, W) float32 arrays."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self.input_name, self.batches, self.position = input_name, list(batches), 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return {self.input_name: np.ascontiguousarray(self.batches[self.position - 1], dtype=np.float32)}


def _ort_method(method: QuantizeMethod) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    if method not in METHODS:
        raise CnnkitError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


def copy_metadata(source: Path, target: Path, **extra: Any) -> None:
    """Put `source`'s metadata properties (class names, preprocessing...) and `extra` into `target`."""
    import onnx

    values = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    values.update({key: json.dumps(value) for key, value in extra.items()})
    proto = onnx.load(str(target))
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(target))


class Int8Quantizer:
    """One fp32 model prepared once (shape inference + graph optimisation, BatchNorm fused) and
    calibrated once (the ranges cached), then quantized with any set of layers kept in float."""

    def __init__(self, fp32_path: str | Path, calibration: Iterable[np.ndarray], *,
                 method: QuantizeMethod = "minmax", workdir: str | Path | None = None) -> None:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.fp32_path = Path(fp32_path)
        if is_quantized(self.fp32_path):
            raise CnnkitError(f"{self.fp32_path}: already quantized (it has QuantizeLinear/DequantizeLinear "
                              "nodes): quantize the fp32 .onnx instead")
        self.method = method
        self._ort_method = _ort_method(method)
        # A private folder (inside `workdir` when given): the prepared graph and the calibration
        # cache belong to this model only; a cache shared between models would miss tensors.
        self._tmp = tempfile.TemporaryDirectory(prefix="cnnkit-int8-", dir=workdir)
        self.workdir = Path(self._tmp.name)
        self.prepared = self.workdir / "prepared.onnx"
        quant_pre_process(str(self.fp32_path), str(self.prepared))
        self.cache = self.workdir / f"calibration-{method}.json"
        self.calibration = [np.asarray(b, np.float32) for b in calibration]
        if not self.calibration:
            raise CnnkitError("int8: no calibration images")
        self.input_name = _input_name(self.prepared)
        if method == "entropy":
            self._calibrate_entropy()
        # Without VNNI, u8·s8 products can saturate 16-bit accumulators (vpmaddubsw): 7-bit weights
        # avoid it (ONNX Runtime's advice); with VNNI full 8 bits are safe.
        self.reduce_range = not device_info().vnni

    def _calibrate_entropy(self) -> None:
        """Entropy ranges with ENTROPY_BINS histograms, written to the calibration cache that
        `quantize_static` then reads instead of calibrating with its own bins."""
        from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

        calibrator = create_calibrator(
            self.prepared, list(QUANTIZED_OPS), augmented_model_path=str(self.workdir / "augmented.onnx"),
            calibrate_method=self._ort_method,
            extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS})
        with _ort_prints_to_log():
            calibrator.collect_data(_BatchReader(self.input_name, self.calibration))
            save_tensors_data(calibrator.compute_data(), self.cache)

    def quantizable_nodes(self) -> list[str]:
        """Names of the Conv/Gemm/MatMul nodes of the prepared graph, in graph order."""
        import onnx

        graph = onnx.load(str(self.prepared)).graph
        return [node.name for node in graph.node if node.op_type in QUANTIZED_OPS]

    def quantize(self, out: str | Path, *, keep_float: Sequence[str] = ()) -> Path:
        """Write the QDQ int8 model to `out` with `keep_float` nodes left in fp32; metadata copied."""
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with _ort_prints_to_log():
            quantize_static(
                str(self.prepared), str(out), _BatchReader(self.input_name, self.calibration),
                quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=self.reduce_range,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=list(keep_float),
                calibrate_method=self._ort_method, calibration_cache_path=str(self.cache),
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
        copy_metadata(self.fp32_path, out, int8={"method": self.method, "kept_float": list(keep_float),
                                                 "reduce_range": self.reduce_range})
        return out

    def close(self) -> None:
        """Remove the prepared graph and the calibration cache."""
        self._tmp.cleanup()


QUANTIZATION_NODES = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                                "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"})


def is_quantized(path: str | Path) -> bool:
    """True when the .onnx graph at `path` already holds quantization nodes (an int8 export)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type in QUANTIZATION_NODES for node in graph.node)


def _input_name(path: Path) -> str:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise CnnkitError(f"{path}: expected one image input, found {inputs}")
    return inputs[0]


def qdq_parameters(path: str | Path) -> dict[str, QParams]:
    """Tensor name -> the scale and zero point of each QuantizeLinear/DequantizeLinear in a QDQ model
    (keyed by the float tensor quantized, or by the int8 weight initializer dequantized)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    found: dict[str, QParams] = {}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) >= 3:
            scale, zero = constants.get(node.input[1]), constants.get(node.input[2])
            if scale is not None and zero is not None:
                found.setdefault(node.input[0], QParams(scale, zero))
    return found
