"""INT8: quantization parameters of known tensors against ONNX Runtime's own arithmetic, and the
accuracy budget keeping the sensitive layers in float (or falling back to fp32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from cnnkit.deploy.export_run import Int8Report, format_int8_report
from cnnkit.deploy.int8_budget import Int8Result, fewest_that_fit, logits_of, quantize_within_budget
from cnnkit.deploy.timing import Timing
from cnnkit.device_info import device_info
from cnnkit.deploy.onnx_export import INPUT_NAME, write_onnx
from cnnkit.deploy.quantize import Int8Quantizer, affine_qparams, qdq_parameters
from cnnkit.models.base import DefaultCfg


class _TwoConvs(nn.Module):
    """(N, 1, 12, 12) -> conv -> ReLU -> conv -> ReLU -> mean -> linear -> (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2, self.fc = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 8, 3), nn.Linear(8, 2)
        self.default_cfg = DefaultCfg(input_size=(1, 12, 12), mean=(0.0,), std=(1.0,), num_classes=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))


def _roundtrip(x: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """x -> QuantizeLinear -> DequantizeLinear, computed by ONNX Runtime."""
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "roundtrip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        [numpy_helper.from_array(np.asarray(scale, np.float32), "s"), numpy_helper.from_array(zero, "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Int8Quantizer, Path, np.ndarray]:
    tmp = tmp_path_factory.mktemp("int8")
    fp32 = write_onnx(_TwoConvs().eval(), tmp / "two.onnx", class_names=["a", "b"], model_name="two_convs")
    rng = np.random.default_rng(0)
    known = rng.uniform(-1.5, 3.0, size=(16, 1, 12, 12)).astype(np.float32)  # the input's true range
    quantizer = Int8Quantizer(fp32, [known[:8], known[8:]], method="minmax", workdir=tmp)
    return quantizer, quantizer.quantize(tmp / "two.int8.onnx"), known


def test_input_scale_and_zero_point_match_the_textbook_and_round_trip(quantized) -> None:
    quantizer, path, known = quantized
    found = qdq_parameters(path)[INPUT_NAME]
    expected = affine_qparams(known.min(), known.max(), qmin=0, qmax=255)
    assert found.zero_point.dtype == np.uint8
    np.testing.assert_allclose(found.scale, expected.scale, rtol=1e-6)
    assert int(found.zero_point) == int(expected.zero_point)
    restored = _roundtrip(known, found.scale, found.zero_point)
    assert np.abs(restored - known).max() <= float(found.scale) / 2 * (1 + 1e-5)


def test_weights_are_symmetric_per_channel_int8_within_half_a_step(quantized) -> None:
    quantizer, path, _ = quantized
    prepared = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(quantizer.prepared)).graph.initializer}
    graph = onnx.load(str(path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    params = qdq_parameters(path)
    qmax = 64 if quantizer.reduce_range else 127
    checked = 0
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or weights.get(node.input[0]) is None:
            continue
        quantized_weight = weights[node.input[0]]
        if quantized_weight.dtype != np.int8 or quantized_weight.ndim != 4:
            continue
        original = next(w for w in prepared.values() if w.shape == quantized_weight.shape and w.dtype == np.float32)
        scale, zero = params[node.input[0]].scale, params[node.input[0]].zero_point
        per_channel = np.abs(original).reshape(original.shape[0], -1).max(axis=1) / qmax
        np.testing.assert_allclose(scale, per_channel, rtol=1e-6)
        assert not zero.any(), "symmetric weights: zero point 0"
        restored = (quantized_weight.astype(np.float32) - zero.reshape(-1, 1, 1, 1)) * scale.reshape(-1, 1, 1, 1)
        assert (np.abs(restored - original) <= scale.reshape(-1, 1, 1, 1) / 2 * (1 + 1e-5)).all()
        checked += 1
    assert checked == 2, "both convs carry int8 weights"


def _outlier_model() -> _TwoConvs:
    """conv1's channel 0 is 1e4 times larger and conv2 reads it 1e4 times weaker: the float function
    barely changes, but one uint8 scale for conv1's output leaves the other channels no levels."""
    model = _TwoConvs().eval()
    with torch.no_grad():
        model.conv1.weight[0] *= 1e4
        model.conv1.bias[0] = abs(float(model.conv1.bias[0])) * 1e4
        model.conv2.weight[:, 0] *= 1e-4
    return model


def test_budget_keeps_the_sensitive_layers_in_float_or_falls_back(tmp_path: Path) -> None:
    model = _outlier_model()
    generator = torch.Generator().manual_seed(1)
    images = torch.rand((128, 1, 12, 12), generator=generator)
    with torch.no_grad():
        margin = model(images) @ torch.tensor([-1.0, 1.0])
        model.fc.bias[1] -= float(margin.median())  # half the images in each class
        clear = (margin - margin.median()).abs().argsort(descending=True)[:64]
        images = images[clear]  # the half far from the decision boundary: int8 noise alone cannot flip them
        labels = model(images).argmax(1).numpy()  # fp32 is right on every image by construction
    fp32 = write_onnx(model, tmp_path / "outlier.onnx", class_names=["a", "b"], model_name="outlier")
    assert 0.2 < labels.mean() < 0.8, "both classes present"
    batches = [b.numpy() for b in images.split(32)]
    quantizer = Int8Quantizer(fp32, batches[:2], method="minmax", workdir=tmp_path)
    notes: list[str] = []

    def evaluate(path: Path) -> np.ndarray:
        return logits_of(path, batches, threads=1).argmax(axis=1)

    result = quantize_within_budget(quantizer, tmp_path / "outlier.int8.onnx", labels=labels, evaluate=evaluate,
                                    max_drop=1.0, probe=batches[:1], threads=1, log=notes.append)
    assert result.fp32_top1 == 1.0
    assert notes and "measuring per-layer sensitivity" in notes[0], "all-int8 broke the budget first"
    assert result.path is not None and result.path.is_file() and result.drop <= 1.0
    assert result.kept_float and set(result.kept_float) <= {name for name, _ in result.sensitivity}
    top = [name for name, _ in result.sensitivity[: len(result.kept_float)]]
    assert list(result.kept_float) == top, "the most sensitive layers stay in float"
    assert "fc" not in " ".join(result.kept_float).lower() and "gemm" not in " ".join(result.kept_float).lower()

    impossible = quantize_within_budget(quantizer, tmp_path / "never.int8.onnx", labels=labels, evaluate=evaluate,
                                        max_drop=-1.0, probe=batches[:1], threads=1, log=notes.append)
    assert impossible.path is None and not (tmp_path / "never.int8.onnx").exists(), "fp32 kept, no int8 file"
    assert not list(tmp_path.glob("probe-*")), "sensitivity trials stay in the quantizer's own folder"


@pytest.mark.parametrize("needed, available, tries", [
    (1, 12, [1]), (3, 12, [1, 2, 4, 3]), (5, 12, [1, 2, 4, 8, 6, 5]), (8, 12, [1, 2, 4, 8, 6, 7]),
    (11, 12, [1, 2, 4, 8, 11, 9, 10]), (12, 12, [1, 2, 4, 8, 11]), (2, 2, [1])])
def test_the_fewest_layers_in_float_are_found(needed: int, available: int, tries: list[int]) -> None:
    """Doubling, then bisection: the smallest count that fits, found in few trials; None when even
    all but one layer in float does not fit."""
    asked: list[int] = []

    def fits(count: int) -> bool:
        asked.append(count)
        return count >= needed

    assert fewest_that_fit(fits, available) == (needed if needed < available else None)
    assert asked == tries


def test_quantizers_sharing_a_workdir_keep_their_own_calibration(tmp_path: Path) -> None:
    """Each model calibrates its own tensors (a cache shared across models once missed layers)."""
    rng = np.random.default_rng(2)
    paths = []
    for name, model in (("two", _TwoConvs().eval()), ("lenet", None)):
        if model is None:
            from cnnkit.models.factory import create_model

            model = create_model("lenet5", num_classes=2).eval()
        fp32 = write_onnx(model, tmp_path / f"{name}.onnx")
        shape = model.default_cfg.input_size
        quantizer = Int8Quantizer(fp32, [rng.random((4, *shape), dtype=np.float32)], workdir=tmp_path)
        paths.append(quantizer.quantize(tmp_path / f"{name}.int8.onnx"))
    assert all(INPUT_NAME in qdq_parameters(p) for p in paths)


def _report(path: Path | None, fp32_ms: float, int8_ms: float) -> Int8Report:
    result = Int8Result(path, 0.90, 0.895, 0.98, ("/conv1/Conv",) if path else ())
    speed = {("fp32", b): Timing(b, fp32_ms * b / 1e3, 0, 0, 5) for b in (1, 32)}
    if path is not None:
        speed.update({("int8", b): Timing(b, int8_ms * b / 1e3, 0, 0, 5) for b in (1, 32)})
    return Int8Report(result, 4_000_000, 1_100_000 if path else None, speed, "entropy")


def test_int8_report_says_plainly_when_int8_is_not_faster(tmp_path: Path) -> None:
    """The figures, the CPU's instruction set, and the verdict: slower int8 is not recommended."""
    isa = "VNNI" if device_info().vnni else "no VNNI"
    slower = format_int8_report(_report(tmp_path / "m.int8.onnx", fp32_ms=2.0, int8_ms=3.0))
    assert "isa: " in slower and f"int8 is NOT faster than fp32 on this machine ({isa}" in slower
    assert "use the fp32 model here" in slower and "speed-up 0.67x" in slower
    assert "top-1 fp32 90.00%  int8 89.50%  drop 0.50 points  agreement 98.00%" in slower
    assert "kept in float (most sensitive first): /conv1/Conv" in slower and "int8 1.10 MB" in slower
    faster = format_int8_report(_report(tmp_path / "m.int8.onnx", fp32_ms=3.0, int8_ms=1.5))
    assert "NOT faster" not in faster and "speed-up 2.00x" in faster
    none = format_int8_report(_report(None, fp32_ms=2.0, int8_ms=0.0))
    assert "no mix of int8 and float layers met the accuracy budget: keeping the fp32 export only" in none
    assert "int8 p50" not in none and "NOT faster" not in none


def test_entropy_calibration_clips_an_outlier_that_minmax_keeps(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """KL calibration picks a range narrower than minmax when one value is far out (ONNX Runtime's default
    bins left it a single candidate, the full range: entropy equalled minmax)."""
    fp32 = write_onnx(_TwoConvs().eval(), tmp_path / "two.onnx")
    images = np.random.default_rng(3).normal(0.0, 1.0, size=(64, 1, 12, 12)).astype(np.float32)
    images[0, 0, 0, 0] = 40.0
    scales = {}
    for method in ("minmax", "entropy", "percentile"):
        quantizer = Int8Quantizer(fp32, [images[:32], images[32:]], method=method, workdir=tmp_path)
        scales[method] = float(qdq_parameters(quantizer.quantize(tmp_path / f"{method}.onnx"))[INPUT_NAME].scale)
        quantizer.close()
    assert scales["minmax"] == pytest.approx(float(affine_qparams(images.min(), 40.0, qmin=0, qmax=255).scale))
    assert scales["entropy"] < 0.5 * scales["minmax"], "the outlier is clipped"
    assert 255 * scales["entropy"] > 6.0, "the bulk (+-3 standard deviations) stays in range"
    assert scales["percentile"] <= scales["minmax"]
    assert capsys.readouterr().out == "", "ONNX Runtime's calibration progress stays out of the report"
