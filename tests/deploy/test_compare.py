"""`cnnkit compare`: the Pareto front on hand-made points, macro-F1 by hand, and the command's outputs."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from colour_folders import make_tiny_folder, write_colour_folders
from tiny_runs import train_tiny_run, train_val_run

from cnnkit.cli import main
from cnnkit.data.folders import FolderDataset
from cnnkit.deploy.bench import parse_backends
from cnnkit.deploy.compare import macro_f1, pareto_front
from cnnkit.deploy.from_run import open_run
from cnnkit.deploy.run_images import split_batches
from cnnkit.errors import CnnkitError
from cnnkit.inference import Predictor


def test_pareto_front_on_hand_made_points() -> None:
    accuracy = [0.90, 0.80, 0.85, 0.95, 0.80, 0.90, 0.70]
    latency = [10.0, 5.0, 12.0, 30.0, 6.0, 10.0, 5.0]
    # (0.85, 12) is beaten by (0.90, 10); (0.80, 6) by (0.80, 5); (0.70, 5) by (0.80, 5);
    # the two identical (0.90, 10) points do not beat each other.
    assert pareto_front(accuracy, latency) == [True, True, False, True, False, True, False]
    assert pareto_front([0.5], [1.0]) == [True]


def test_macro_f1_by_hand() -> None:
    confusion = torch.tensor([[5, 1, 0], [2, 3, 1], [0, 0, 4]])  # rows true, columns predicted
    f1 = [2 * 5 / (2 * 5 + 2 + 1), 2 * 3 / (2 * 3 + 1 + 3), 2 * 4 / (2 * 4 + 1 + 0)]
    assert macro_f1(confusion) == pytest.approx(sum(f1) / 3)


def test_compare_trains_measures_and_stars_the_front(tmp_path: Path, capsys) -> None:
    data = make_tiny_folder(tmp_path / "data")
    out = tmp_path / "cmp"
    code = main(["compare", str(data), "--models", "compact_cnn,mnist_cnn", "--epochs", "1", "--batch-size", "8",
                 "--img-size", "16", "--out", str(out), "--quiet", "--backends", "torch,onnx,int8",
                 "--calibration-size", "16"])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    with (out / "compare.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["compact_cnn", "mnist_cnn"]
    assert int(rows[0]["params"]) > int(rows[1]["params"]) > 0 and int(rows[0]["macs"]) > 0
    for backend in ("torch", "onnx", "int8"):
        assert all(float(r[f"latency_p50_ms_b1_{backend}"]) > 0 and float(r[f"images_per_s_b32_{backend}"]) > 0
                   and int(r[f"size_bytes_{backend}"]) > 0 for r in rows)
        top1 = [float(r["test_top1"] if backend == "torch" else r[f"test_top1_{backend}"]) for r in rows]
        assert all(0 <= t <= 1 for t in top1)
        front = pareto_front(top1, [float(r[f"latency_p50_ms_b1_{backend}"]) for r in rows])
        assert [bool(int(r[f"pareto_{backend}"])) for r in rows] == front and any(front)
    for row, folder in zip(rows, ("compact_cnn", "mnist_cnn")):
        assert int(row["size_bytes_torch"]) == (out / folder / "best.safetensors").stat().st_size
        assert int(row["size_bytes_onnx"]) == (out / "exports" / folder / "model.onnx").stat().st_size
        assert int(row["size_bytes_int8"]) == (out / "exports" / folder / "model.int8.onnx").stat().st_size
        # the ONNX Runtime fp32 model is the torch model: same predictions on the test split
        assert float(row["test_top1_onnx"]) == pytest.approx(float(row["test_top1"]))
    for row in rows:  # torch's top-1 and macro-F1 are `cnnkit eval`'s on the run's test split
        capsys.readouterr()
        assert main(["eval", str(out / row["model"]), str(data), "--json"]) == 0
        evaluated = json.loads(capsys.readouterr().out)
        confusion = np.array(evaluated["confusion"], dtype=float)
        tp = np.diag(confusion)
        f1 = 2 * tp / (confusion.sum(0) + confusion.sum(1))
        assert evaluated["split"] == "test" and float(row["test_top1"]) == pytest.approx(evaluated["test_top1"])
        assert float(row["macro_f1"]) == pytest.approx(float(np.nanmean(f1)), abs=1e-6)
    # int8 weights are a quarter of fp32's (plus scales and the graph)
    assert int(rows[0]["size_bytes_int8"]) < 0.5 * int(rows[0]["size_bytes_onnx"])
    starred = [line.split()[1] for line in printed.splitlines() if line.startswith("* ")]
    assert starred == [r["model"] for r in rows if any(int(r[f"pareto_{b}"]) for b in ("torch", "onnx", "int8"))]
    assert (out / "pareto.png").stat().st_size > 5000
    # finished runs compare without retraining; the default backends are torch and onnx
    assert main(["compare", str(data), "--runs", str(out / "mnist_cnn"), "--out", str(tmp_path / "again")]) == 0
    assert "mnist_cnn" in capsys.readouterr().out
    with (tmp_path / "again" / "compare.csv").open() as handle:
        header = next(csv.reader(handle))
    assert "images_per_s_b32_onnx" in header and not any(column.endswith("_int8") for column in header)


def test_compare_decodes_each_test_image_once(tmp_path: Path, monkeypatch, capsys) -> None:
    """Torch's top-1, the export check's real images and every ONNX backend's top-1 share one pass over
    the test split (it was streamed three times)."""
    data = make_tiny_folder(tmp_path / "data")
    run = train_tiny_run(data, tmp_path / "run", epochs=1)
    test = open_run(run, str(data)).data.splits["test"]
    tested = [str(test.base.files[i]) for i in test.indices]
    decoded: Counter[str] = Counter()
    load = FolderDataset.load

    def counting_load(self: FolderDataset, index: int) -> tuple[torch.Tensor, int]:
        decoded[str(self.files[index])] += 1
        return load(self, index)

    monkeypatch.setattr(FolderDataset, "load", counting_load)
    assert main(["compare", str(data), "--runs", str(run), "--out", str(tmp_path / "cmp"),
                 "--backends", "torch,onnx"]) == 0, capsys.readouterr().err
    assert tested and [decoded[path] for path in tested] == [1] * len(tested)
    # the export check's 7 real images are the ones drawn from the split on its own before
    source = open_run(run, str(data))
    for seed in (0, 3):
        alone = split_batches(source, "test", limit=5, seed=seed).first(5)
        assert torch.equal(split_batches(source, "test", seed=seed).drawn(5, seed), alone)


def test_test_images_are_decoded_as_at_evaluation(tmp_path: Path) -> None:
    """JPEGs larger than the input are decoded with the evaluation pipeline's size hint (JPEG DCT scaling),
    as `cnnkit eval` and `Predictor` decode them: compare's and export's accuracies are theirs."""
    data = write_colour_folders(tmp_path / "data", (("blue", 2), ("red", 0)), images=12, size=(64, 64),
                                noise_below=80, channel_from=170, suffix=".jpg")
    run = train_tiny_run(data, tmp_path / "run", epochs=1)
    source = open_run(run, str(data))
    test = source.data.splits["test"]
    files = [test.base.files[i] for i in test.indices]
    expected = Predictor.from_run(run, device="cpu").preprocess(files).batch
    assert torch.equal(torch.from_numpy(np.concatenate(split_batches(source, "test").batches)), expected)


def test_compare_refuses_an_unknown_backend(tmp_path: Path, capsys) -> None:
    assert main(["compare", str(tmp_path), "--runs", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--backends", "torch,tensorrt"]) != 0
    assert "--backends: unknown tensorrt (choose from torch, onnx, int8)" in capsys.readouterr().err
    with pytest.raises(CnnkitError, match="--backends: none given"):
        parse_backends(" , ")


def test_compare_refuses_training_flags_with_finished_runs(tmp_path: Path, capsys) -> None:
    assert main(["compare", str(tmp_path), "--runs", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--epochs", "3", "--img-size", "16"]) == 2
    assert "--epochs, --img-size: training flags have no effect with --runs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_compare_checks_every_model_name_before_training_any(tmp_path: Path, capsys) -> None:
    """A bad name last in --models is refused before the first backbone trains (no work thrown away)."""
    data = make_tiny_folder(tmp_path / "data")
    out = tmp_path / "cmp"
    common = ["--epochs", "1", "--batch-size", "8", "--img-size", "16", "--out", str(out), "--quiet"]
    assert main(["compare", str(data), "--models", "compact_cnn,no_such", *common]) == 2
    assert "--models: unknown model 'no_such'" in capsys.readouterr().err
    assert main(["compare", str(data), "--models", "compact_cnn,mnist_cnn,compact_cnn", *common]) == 2
    assert "--models: compact_cnn given more than once" in capsys.readouterr().err
    assert not (out / "compact_cnn" / "summary.json").exists(), "nothing was trained"


def test_accuracy_is_measured_on_test_else_val_never_on_train() -> None:
    """Data given as train/val (hymenoptera's layout) is measured on val; train-only data is an error."""
    from types import SimpleNamespace

    from cnnkit.deploy.run_images import test_split

    def source(*splits: str) -> SimpleNamespace:
        return SimpleNamespace(path=Path("runs/x"), data=SimpleNamespace(splits={name: [0] for name in splits}))

    assert test_split(source("train", "val", "test")) == "test"
    assert test_split(source("train", "val")) == "val"
    with pytest.raises(CnnkitError, match=r"runs/x has no test or val split .* \['train'\]"):
        test_split(source("train"))


def test_two_runs_of_one_model_are_told_apart_in_the_table() -> None:
    """A run and its pruned copy (both resnet18) were two identical 'resnet18' rows; each now carries its run folder."""
    from cnnkit.deploy.compare import CompareRow, format_compare, row_labels
    from cnnkit.deploy.compare_backends import BackendFigures
    from cnnkit.deploy.latency import Latency

    def row(model: str, run_dir: str) -> CompareRow:
        return CompareRow(model, run_dir, 10, 20, 0.5, 0.5, {"torch": BackendFigures(0.5, 100, Latency(1.0, 50.0, 1))})

    rows = [row("resnet18", "runs/hym"), row("resnet18", "runs/slim"), row("compact_cnn", "runs/student")]
    assert row_labels(rows) == ["resnet18 (hym)", "resnet18 (slim)", "compact_cnn"]
    table = format_compare(rows).splitlines()
    assert table[-1].endswith("top-1 and macro-F1 on the test split")
    assert "resnet18 (hym)" in table[1] and "resnet18 (slim)" in table[2] and "compact_cnn " in table[3]


def test_compare_names_the_split_its_accuracies_are_on(tmp_path: Path, capsys) -> None:
    """Data given as train/val: compare's accuracies are val figures, and the table and compare.csv say so."""
    data, run = train_val_run(tmp_path)
    capsys.readouterr()
    assert main(["compare", str(data), "--runs", str(run), "--backends", "torch", "--out", str(tmp_path / "c")]) == 0
    assert "top-1 and macro-F1 on the val split" in capsys.readouterr().out
    (row,) = csv.DictReader((tmp_path / "c" / "compare.csv").open())
    assert row["split"] == "val"
