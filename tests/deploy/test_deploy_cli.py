"""`cnnkit export` (checked ONNX + INT8 with its accuracy) and `cnnkit bench` on a tiny trained run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from colour_folders import make_tiny_folder
from tiny_runs import train_tiny_run

from cnnkit.analysis.summary import summary as analyse
from cnnkit.cli import main
from cnnkit.deploy.from_run import open_run
from cnnkit.deploy.run_images import split_batches
from cnnkit.errors import CnnkitError
from cnnkit.inference import Predictor, read_summary, update_summary
from cnnkit.inference.commands import open_predictor
from cnnkit.inference.onnx_backend import OnnxBackend, onnx_metadata, onnx_providers
from cnnkit.models.factory import create_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("deploy-cli")
    data = make_tiny_folder(root / "tiny")
    return data, train_tiny_run(data, root / "run")


@pytest.fixture(scope="module")
def exported(tiny: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data, run = tiny
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["export", str(run), "--format", "onnx", "--out", str(out), "--calibration", str(data),
                     "--int8", "--calibration-size", "16", "--threads", "1"])
    assert code == 0
    return out, stdout.getvalue()


def test_a_calibrated_runs_onnx_predicts_with_its_temperature(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    data, run = tiny
    calibrated = tmp_path / "calibrated"
    shutil.copytree(run, calibrated)
    update_summary(calibrated, temperature=2.5)
    out = tmp_path / "calibrated.onnx"
    assert main(["export", str(calibrated), "--format", "onnx", "--out", str(out)]) == 0
    from_onnx, from_run = Predictor.from_onnx(out), Predictor.from_run(calibrated)
    assert from_onnx.temperature == 2.5 == from_run.temperature
    images = sorted(data.rglob("*.png"))[:4]
    for a, b in zip(from_onnx.predict(images, top_k=2), from_run.predict(images, top_k=2)):
        assert [c.label for c in a.top] == [c.label for c in b.top]
        assert [c.probability for c in a.top] == pytest.approx([c.probability for c in b.top], abs=1e-5)


def test_export_prints_the_check_and_the_int8_figures_side_by_side(exported: tuple[Path, str]) -> None:
    out, text = exported
    assert "ONNX Runtime vs PyTorch: random batch 1" in text and "real batch 7" in text
    assert "isa: " in text and "top-1 fp32" in text and "agreement" in text
    assert "batch  1: fp32 p50" in text and "batch 32: fp32 p50" in text
    int8 = out.with_name("model.int8.onnx")
    assert int8.is_file() and int8.stat().st_size < out.stat().st_size
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops, "QDQ format"


def test_the_onnx_file_alone_predicts_like_the_run(exported: tuple[Path, str], tiny: tuple[Path, Path]) -> None:
    out, _ = exported
    data, run = tiny
    source = open_run(run, str(data))
    meta = onnx_metadata(out)
    assert meta.class_names == source.summary.class_names and meta.model_name == "compact_cnn"
    assert meta.default_cfg == source.model.default_cfg, "the preprocessing travels in the file"
    assert meta.temperature is None, "an uncalibrated run has no temperature"
    test = split_batches(source, "test")
    images = torch.from_numpy(np.concatenate(test.batches))
    with torch.no_grad():
        torch_top1 = source.model(images).argmax(1)
    assert torch.equal(OnnxBackend(out, threads=1).logits(images).argmax(1), torch_top1)
    summary = read_summary(run)
    assert summary.exports["onnx"] == str(out.resolve()) and summary.export_checks["onnx"] < 1e-4
    assert summary.exports["onnx-int8"] == str(out.with_name("model.int8.onnx").resolve())
    assert "isa" in summary.int8["cpu"]
    int8 = OnnxBackend(out.with_name("model.int8.onnx"), threads=1).logits(images).argmax(1)
    labels = torch.from_numpy(test.labels)
    assert summary.int8["int8_top1"] == pytest.approx(float((int8 == labels).float().mean()))
    assert summary.int8["fp32_top1"] == pytest.approx(float((torch_top1 == labels).float().mean()))
    assert summary.int8["agreement"] == pytest.approx(float((int8 == torch_top1).float().mean()))


def test_export_refuses_int8_without_data_and_a_bad_suffix(tiny: tuple[Path, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    _, run = tiny
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx"), "--int8"]) == 2
    assert "--int8 needs --calibration DATA" in capsys.readouterr().err
    assert main(["export", str(run), "--out", str(tmp_path / "m.pt")]) == 2
    assert "--out must name an .onnx file" in capsys.readouterr().err
    data, _ = tiny
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx"), "--int8", "--calibration", str(data),
                 "--calibration-size", "16", "--threads", "1", "--max-drop", "-1"]) == 2
    assert "--max-drop is the largest top-1 loss allowed, in points >= 0; got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_a_run_with_corrupt_weights_is_named(tiny: tuple[Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    import shutil

    _, run = tiny
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "best.safetensors").write_bytes((run / "best.safetensors").read_bytes()[:100])
    assert main(["export", str(broken), "--out", str(tmp_path / "m.onnx")]) == 2
    assert f"cannot read {broken / 'best.safetensors'} as a safetensors file" in capsys.readouterr().err


def test_export_refuses_int8_of_a_fixed_batch_model_before_exporting(tiny: tuple[Path, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """int8 is evaluated and timed at batch 32: a batch-1 export would fail half-way, so it is refused up front."""
    data, run = tiny
    out = tmp_path / "fixed.onnx"
    assert main(["export", str(run), "--out", str(out), "--fixed-batch", "--int8", "--calibration", str(data),
                 "--calibration-size", "16", "--threads", "1"]) == 2
    assert "--int8 cannot be combined with --fixed-batch" in capsys.readouterr().err
    assert not out.exists()


def test_bench_writes_percentiles_threads_params_and_macs(exported: tuple[Path, str], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = exported
    table = tmp_path / "bench.csv"
    opened: list[str] = []
    open_session = OnnxBackend.__init__

    def counting_init(self: OnnxBackend, path: str | Path, **options: object) -> None:
        opened.append(Path(path).name)
        open_session(self, path, **options)

    monkeypatch.setattr(OnnxBackend, "__init__", counting_init)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        code = main(["bench", "compact_cnn", str(out), "--img-size", "16", "--batch-sizes", "1,4", "--repeats", "3",
                     "--backends", "torch,onnx,int8", "--threads", "1", "--csv", str(table)])
        assert torch.get_num_threads() == 2, "the process's thread setting is restored"
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert code == 0 and "isa:" in printed and "p99 ms" in printed
    # one session per .onnx and backend for both batch sizes (the zoo model's exports, then the file's)
    assert opened == ["fp32.onnx", "int8.onnx", out.name, "int8.onnx"], opened
    rows = list(csv.DictReader(table.open()))
    cells = [(r["target"], r["backend"], r["batch"]) for r in rows]
    assert cells == [("compact_cnn", b, s) for b in ("torch", "onnx", "int8") for s in ("1", "4")] + [
        (str(out), b, s) for b in ("onnx", "int8") for s in ("1", "4")], "an .onnx file has no torch row"
    reference = analyse(create_model("compact_cnn"), (1, 16, 16))
    first = rows[0]
    assert int(first["params"]) == reference.total_params and int(first["macs"]) == reference.total_macs
    for row in rows:
        assert row["threads"] == "1" and float(row["p50_ms"]) <= float(row["p90_ms"]) <= float(row["p99_ms"])
        assert float(row["images_per_s"]) == pytest.approx(int(row["batch"]) / (float(row["p50_ms"]) / 1e3), rel=1e-2)


def test_bench_counts_an_onnx_file_only_when_its_graph_is_the_zoo_architecture(
        exported: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A run's .onnx counts as its zoo model; a channel-pruned or re-headed one's are unknown, not the zoo model's."""
    from cnnkit.deploy.channels import prune_channels
    from cnnkit.deploy.onnx_export import write_onnx
    from cnnkit.models.heads import HeadSpec

    out, _ = exported
    cfg = onnx_metadata(out).default_cfg
    torch.manual_seed(0)
    slim, _ = prune_channels(create_model("compact_cnn", num_classes=2, in_chans=cfg.input_size[0]).eval(), 0.5)
    slim_path = write_onnx(slim, tmp_path / "slim.onnx", input_size=cfg.input_size, model_name="compact_cnn")
    headed = create_model("compact_cnn", num_classes=2, in_chans=cfg.input_size[0], head=HeadSpec(hidden=(8,)))
    headed_path = write_onnx(headed.eval(), tmp_path / "head.onnx", input_size=cfg.input_size, model_name="compact_cnn")
    table = tmp_path / "bench.csv"
    assert main(["bench", str(out), str(slim_path), str(headed_path), "--batch-sizes", "1", "--repeats", "3",
                 "--backends", "onnx", "--threads", "1", "--csv", str(table)]) == 0
    assert f"params/MACs unknown for {headed_path}, {slim_path}" in capsys.readouterr().out
    full, pruned, other_head = csv.DictReader(table.open())
    reference = analyse(create_model("compact_cnn", num_classes=2, in_chans=cfg.input_size[0]), cfg.input_size)
    assert (int(full["params"]), int(full["macs"])) == (reference.total_params, reference.total_macs)
    assert (pruned["params"], pruned["macs"]) == (other_head["params"], other_head["macs"]) == ("", "")


def test_bench_times_an_int8_export_as_it_is(exported: tuple[Path, str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    """`export --int8`'s file is benched as the int8 backend, not quantized a second time (which
    ONNX Runtime refused: 'two nodes with same node name')."""
    from cnnkit.deploy.quantize import Int8Quantizer, is_quantized

    out, _ = exported
    int8 = out.with_name("model.int8.onnx")
    assert is_quantized(int8) and not is_quantized(out)
    table = tmp_path / "bench.csv"
    assert main(["bench", str(out), str(int8), "--batch-sizes", "1", "--repeats", "3", "--backends", "onnx,int8",
                 "--threads", "1", "--csv", str(table)]) == 0, capsys.readouterr().err
    cells = [(r["target"], r["backend"]) for r in csv.DictReader(table.open())]
    assert cells == [(str(out), "onnx"), (str(out), "int8"), (str(int8), "int8")]
    assert "int8 rows (except an int8 .onnx's own) are calibrated on random inputs" in capsys.readouterr().out
    assert main(["bench", str(int8), "--batch-sizes", "1", "--repeats", "3", "--threads", "1",
                 "--csv", str(table)]) == 0
    assert "calibrated on random inputs" not in capsys.readouterr().out, "the file's own calibration"
    assert main(["bench", str(int8), "--backends", "onnx", "--csv", str(table)]) == 2
    assert f"{int8}: an int8 .onnx file has no onnx backend; use --backends int8" in capsys.readouterr().err
    with pytest.raises(CnnkitError, match="already quantized"):
        Int8Quantizer(int8, [np.zeros((1, 3, 16, 16), np.float32)])


def test_bench_refuses_unknown_targets_and_backends(exported: tuple[Path, str], capsys: pytest.CaptureFixture,
                                                   tmp_path: Path) -> None:
    assert main(["bench", "no_such_model", "--csv", str(tmp_path / "b.csv")]) == 2
    assert "not a zoo model, a run directory or an .onnx file" in capsys.readouterr().err
    assert main(["bench", "lenet5", "--backends", "torch,tensorrt", "--csv", str(tmp_path / "b.csv")]) == 2
    assert "unknown tensorrt" in capsys.readouterr().err
    assert main(["bench", str(exported[0]), "--backends", "torch", "--csv", str(tmp_path / "b.csv")]) == 2
    assert f"{exported[0]}: an .onnx file has no torch backend" in capsys.readouterr().err


def test_bench_writes_its_csv_into_a_new_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = tmp_path / "new" / "bench.csv"
    assert main(["bench", "lenet5", "--backends", "torch", "--batch-sizes", "1", "--repeats", "3", "--threads", "1",
                 "--csv", str(table)]) == 0
    assert [row["backend"] for row in csv.DictReader(table.open())] == ["torch"]


def _cli_json(argv: list[str], capsys: pytest.CaptureFixture) -> object:
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_eval_of_the_onnx_file_equals_the_runs(exported: tuple[Path, str], tiny: tuple[Path, Path],
                                               capsys: pytest.CaptureFixture) -> None:
    """`cnnkit eval model.onnx DATA` (ONNX Runtime) and `cnnkit eval RUN DATA` (torch) on the same test
    split (the .onnx has no split.json: the run's seed cuts the same one): identical top-1 and confusion."""
    out, _ = exported
    data, run = tiny
    seed = str(open_run(run, str(data)).config.seed)
    torch_eval = _cli_json(["eval", str(run), str(data), "--json"], capsys)
    onnx_eval = _cli_json(["eval", str(out), str(data), "--seed", seed, "--json"], capsys)
    assert onnx_eval["split"] == torch_eval["split"] == "test"
    assert onnx_eval["confusion"] == torch_eval["confusion"] and sum(map(sum, torch_eval["confusion"])) > 0
    assert onnx_eval["test_top1"] == torch_eval["test_top1"]
    assert onnx_eval["test_loss"] == pytest.approx(torch_eval["test_loss"], rel=1e-4)


def test_predict_with_the_onnx_file_equals_the_runs(exported: tuple[Path, str], tiny: tuple[Path, Path],
                                                    capsys: pytest.CaptureFixture) -> None:
    out, _ = exported
    data, run = tiny
    images = [str(data / "red" / "0.png"), str(data / "blue" / "3.png"), str(data / "blue")]
    predictor = Predictor.from_onnx(out, batch_size=4, threads=1)
    assert predictor.backend.name == "onnx" and predictor.model_name == "compact_cnn"
    torch_rows = _cli_json(["predict", str(run), *images, "--top-k", "2", "--json"], capsys)
    onnx_rows = _cli_json(["predict", str(out), *images, "--top-k", "2", "--json"], capsys)
    assert len(onnx_rows) == len(torch_rows) == 25, "red/0.png and the 24 blue ones (blue/3.png once)"
    for got, want in zip(onnx_rows, torch_rows):
        assert got["path"] == want["path"]
        assert [c["label"] for c in got["top"]] == [c["label"] for c in want["top"]]
        for g, w in zip(got["top"], want["top"]):
            assert g["probability"] == pytest.approx(w["probability"], abs=1e-5)


def test_predictor_from_onnx_names_a_file_without_metadata(exported: tuple[Path, str], tmp_path: Path) -> None:
    proto = onnx.load(str(exported[0]))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    with pytest.raises(CnnkitError, match="plain.onnx: no cnnkit metadata"):
        Predictor.from_onnx(plain)


def test_onnx_eval_and_predict_honour_device(exported: tuple[Path, str], tiny: tuple[Path, Path],
                                            capsys: pytest.CaptureFixture) -> None:
    """`--device cpu` runs the CPU provider alone; `--device cuda` without onnxruntime's CUDA provider
    (or a device ONNX Runtime has no provider for) is an error naming --device, not a silent CPU run."""
    import onnxruntime

    out, _ = exported
    data, _ = tiny
    assert open_predictor(str(out), device="cpu", batch_size=4).backend.session.get_providers() == [
        "CPUExecutionProvider"]
    cpu = _cli_json(["eval", str(out), str(data), "--device", "cpu", "--json"], capsys)
    assert cpu["confusion"] == _cli_json(["eval", str(out), str(data), "--json"], capsys)["confusion"]
    image = str(data / "red" / "0.png")
    assert _cli_json(["predict", str(out), image, "--device", "cpu", "--json"], capsys)[0]["path"] == image
    commands = (["eval", str(out), str(data)], ["predict", str(out), image])
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        for command in commands:
            assert main([*command, "--device", "cuda"]) != 0
            assert "--device: device 'cuda': this onnxruntime" in capsys.readouterr().err
    for command in commands:
        assert main([*command, "--device", "mps"]) != 0
        assert "--device: device 'mps': ONNX Runtime runs on cpu or cuda" in capsys.readouterr().err


def test_onnx_providers_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert onnx_providers("cuda:1") == (torch.device("cuda:1"),
                                        [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"])
    assert onnx_providers(None)[1][0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert onnx_providers("cpu") == (torch.device("cpu"), ["CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert onnx_providers(None) == (torch.device("cpu"), ["CPUExecutionProvider"])
    with pytest.raises(CnnkitError, match="device 'cuda:0': this onnxruntime .* no CUDAExecutionProvider"):
        onnx_providers("cuda:0")
    with pytest.raises(CnnkitError, match="'gpu0' is not a device name"):
        onnx_providers("gpu0")


def test_bench_records_keep_a_sub_millisecond_latency_to_its_significant_digits() -> None:
    """A 45.5 us forward was written as 0.045 ms (3 decimals): 1% off, and images_per_s then disagreed
    with batch / p50 in the same row (a fast machine failed the test above)."""
    from cnnkit.deploy.bench import BenchRow, row_values
    from cnnkit.deploy.timing import Timing

    timing = Timing(batch=1, p50=45.5123e-6, p90=51.0e-6, p99=2.5, repeats=3)
    values = row_values(BenchRow("m", "onnx", 1, None, None, timing))
    assert values["p50_ms"] == pytest.approx(0.0455123, rel=1e-4) and values["p99_ms"] == 2500.0
    assert values["images_per_s"] == pytest.approx(1 / (values["p50_ms"] / 1e3), rel=1e-4)
