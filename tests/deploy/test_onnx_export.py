"""ONNX export: every zoo model checked against ONNX Runtime, metadata round trip, the ONNX backend,
and a corrupted graph caught by the check."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from zoo_inputs import settle_batchnorm, small_input, zoo_params

from cnnkit.deploy.onnx_check import verify_onnx
from cnnkit.deploy.onnx_export import export_onnx, write_onnx
from cnnkit.errors import CnnkitError
from cnnkit.inference.onnx_backend import OnnxBackend, onnx_metadata
from cnnkit.models.factory import create_model

@pytest.mark.parametrize("name", zoo_params())
def test_every_zoo_model_exports_and_matches_onnx_runtime(name: str, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = create_model(name, num_classes=10)
    settle_batchnorm(model, small_input(name, model, 8, generator))
    x = small_input(name, model, 4, generator)
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        path = export_onnx(model, tmp_path / f"{name}.onnx", input_size=tuple(x.shape[1:]), model_name=name,
                           real_inputs=x)
    assert "random batch 1" in caplog.text and "random batch 7" in caplog.text and "real batch 7" in caplog.text
    with torch.no_grad():
        expected = model(x)
    actual = OnnxBackend(path, threads=1).logits(x)
    assert bool(((actual - expected).abs() <= 1e-4 + 1e-3 * expected.abs()).all())


@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = create_model("compact_cnn", num_classes=3, in_chans=1).eval()
    path = write_onnx(model, tmp_path_factory.mktemp("onnx") / "compact.onnx", input_size=(1, 16, 16),
                      class_names=["center", "edge", "none"], model_name="compact_cnn")
    return model, path


def test_metadata_round_trips(small_export: tuple[torch.nn.Module, Path]) -> None:
    model, path = small_export
    meta = onnx_metadata(path)
    class_names, cfg, model_name = meta.class_names, meta.default_cfg, meta.model_name
    assert class_names == ("center", "edge", "none") and model_name == "compact_cnn"
    assert cfg.input_size == (1, 16, 16)
    assert (cfg.mean, cfg.std, cfg.interpolation, cfg.crop_pct) == (
        model.default_cfg.mean, model.default_cfg.std, model.default_cfg.interpolation, model.default_cfg.crop_pct)
    keys = {p.key for p in onnx.load(str(path)).metadata_props}
    assert {"class_names", "mean", "std", "input_size", "interpolation", "crop_pct", "model_name",
            "cnnkit_version"} <= keys


def test_backend_runs_any_batch_and_refuses_features(small_export: tuple[torch.nn.Module, Path]) -> None:
    model, path = small_export
    backend = OnnxBackend(path, threads=1)
    assert backend.name == "onnx"
    x = torch.randn(5, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(backend.logits(x), model(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(CnnkitError, match="not available for ONNX"):
        backend.features(x)


def test_fixed_batch_export_refuses_another_batch(tmp_path: Path) -> None:
    model = create_model("lenet5", num_classes=4).eval()
    path = export_onnx(model, tmp_path / "fixed.onnx", dynamic_batch=False)
    backend = OnnxBackend(path)
    assert backend.input_shape == (1, 1, 32, 32)
    with pytest.raises(CnnkitError, match="batch 1 only"):
        backend.logits(torch.zeros(2, 1, 32, 32))


def test_a_corrupted_graph_is_caught_naming_the_largest_mismatch(
        small_export: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    model, path = small_export
    proto = onnx.load(str(path))
    bias = next(t for t in proto.graph.initializer if t.name == "classifier.bias")
    values = onnx.numpy_helper.to_array(bias).copy()
    values[1] += 0.05  # class 1's logit shifted: far beyond atol 1e-4 + rtol 1e-3
    bias.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), bias.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    with pytest.raises(CnnkitError, match=r"broken.onnx: ONNX Runtime disagrees .* batch 1: sample 0, class 1: onnx .* vs torch .*max \|diff\|"):
        verify_onnx(broken, model, real_inputs=torch.rand(3, 1, 16, 16))


class _DriftingModel(torch.nn.Module):
    """Its logits scale with the number of calls so far: the traced graph keeps one call's factor,
    so ONNX Runtime disagrees with every later eager call (a stand-in for a silent exporter error)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.calls = torch.nn.Conv2d(1, 2, 1), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x).mean(dim=(2, 3)) * self.calls


def test_a_failed_check_leaves_the_target_path_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"an earlier, checked export")
    with pytest.raises(CnnkitError, match=r"model.unchecked.onnx: ONNX Runtime disagrees with PyTorch"):
        export_onnx(_DriftingModel().eval(), target, input_size=(1, 4, 4))
    assert target.read_bytes() == b"an earlier, checked export", "never overwritten by an unchecked file"
    assert (tmp_path / "model.unchecked.onnx").is_file(), "the failed export is kept for inspection"
    model = create_model("lenet5", num_classes=4).eval()
    export_onnx(model, target)
    assert onnx_metadata(target).model_name == "LeNet5" and not (tmp_path / "model.unchecked.onnx").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_files_without_cnnkit_metadata_or_bad_sizes_are_refused(tmp_path: Path) -> None:
    model = create_model("lenet5", num_classes=4).eval()
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 32, 32),), str(plain), dynamo=False)
    with pytest.raises(CnnkitError, match="no cnnkit metadata"):
        onnx_metadata(plain)
    with pytest.raises(CnnkitError, match="input_size must be"):
        write_onnx(model, tmp_path / "x.onnx", input_size=(1, 32))
    with pytest.raises(CnnkitError, match="opset 99 is not supported: choose 7 to 20"):
        write_onnx(model, tmp_path / "x.onnx", opset=99)
    with pytest.raises(CnnkitError, match="no such ONNX file"):
        OnnxBackend(tmp_path / "missing.onnx")


def test_a_zero_class_model_is_refused_before_any_export(tmp_path: Path) -> None:
    model = create_model("lenet5", num_classes=0).eval()
    with pytest.raises(CnnkitError, match=r"an ONNX export \(its file carries class names\) needs class scores"):
        write_onnx(model, tmp_path / "x.onnx")
    assert not any(tmp_path.iterdir())
