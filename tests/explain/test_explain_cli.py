"""`cnnkit explain` on a saved compact_cnn run: overlays, raw maps, predictions, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cnnkit.cli import main
from cnnkit.data.pipeline import eval_pipeline
from cnnkit.explain.activation_maps import cam
from cnnkit.inference import load_run, update_summary
from cnnkit.models.factory import create_model

CLASSES = ["center", "donut", "scratch"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run as the trainer leaves it: summary.json + best.safetensors."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = create_model("compact_cnn", num_classes=len(CLASSES), in_chans=1)
    save_file(model.state_dict(), str(run / "best.safetensors"))
    (run / "summary.json").write_text(json.dumps({
        "model_name": "compact_cnn", "class_names": CLASSES, "default_cfg": model.default_cfg.to_dict()}))
    return run


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(2):
        path = folder / f"wafer{index}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def model_of(run_dir: Path) -> torch.nn.Module:
    return load_run(run_dir)[0]


def plain_input(path: Path, model: torch.nn.Module) -> torch.Tensor:
    """(1, 1, 32, 32): PIL decode and the eval pipeline, without the Predictor."""
    return eval_pipeline(model.default_cfg)(torch.from_numpy(np.array(Image.open(path)))[None])[None]


def test_explain_writes_overlays_and_raw_maps_and_reports_the_prediction(run_dir, images, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["explain", str(run_dir), *map(str, images), "--method", "layercam", "--layer", "features.2",
            "--out", str(out), "--json", "--raw"]
    assert main(argv) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in records] == list(map(str, images))
    model = model_of(run_dir)
    for record, path in zip(records, images):
        x = plain_input(path, model)
        with torch.no_grad():
            probabilities = model(x).softmax(dim=1)[0]
        assert record["label"] == CLASSES[int(probabilities.argmax())]
        assert record["probability"] == pytest.approx(float(probabilities.max()), abs=1e-6)
        assert (record["method"], record["layer"], record["explained"]["label"]) == ("layercam", "features.2",
                                                                                     record["label"])
        raw = np.load(record["raw"])
        expected = cam(model, x, method="layercam", target_layer="features.2", normalize=False)[0]
        np.testing.assert_allclose(raw, expected.numpy(), atol=1e-5)
        picture = Image.open(record["overlay"])
        assert picture.mode == "RGB" and picture.size[0] >= 32


def test_explain_json_keys_the_prediction_as_predict_json_does(run_dir, images, tmp_path, capsys):
    """One vocabulary (path, label, probability): explain's record holds predict's top-1 row, and
    the explained class in the same shape as predict's `top` entries."""
    assert main(["predict", str(run_dir), *map(str, images), "--top-k", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert main(["explain", str(run_dir), *map(str, images), "--class", "donut", "--out", str(tmp_path), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    for record, row in zip(records, rows, strict=True):
        assert {key: record[key] for key in ("path", "label", "probability")} == {
            key: row[key] for key in ("path", "label", "probability")}
        assert record["explained"] == next(entry for entry in row["top"] if entry["label"] == "donut")


def test_explain_a_named_class_and_print_a_line_per_image(run_dir, images, tmp_path, capsys):
    assert main(["explain", str(run_dir), str(images[0]), "--class", "donut", "--out", str(tmp_path)]) == 0
    output = capsys.readouterr()
    line = output.out.strip()
    # The default layer on 32x32 maps is 4x4: a note names the finer layer to use instead.
    assert "trust LayerCAM at features.2 (16x16)" in output.err and "--method layercam --layer features.2" in output.err
    assert line.startswith(f"{images[0]}: ") and "gradcam of donut at features ->" in line
    assert (tmp_path / "wafer0_gradcam_donut.png").is_file()


def test_unknown_class_and_layer_are_errors_that_list_the_choices(run_dir, images, tmp_path, capsys):
    assert main(["explain", str(run_dir), str(images[0]), "--class", "ring", "--out", str(tmp_path)]) == 2
    assert "'ring' is not one of the run's classes: center, donut, scratch" in capsys.readouterr().err
    assert main(["explain", str(run_dir), str(images[0]), "--layer", "features.99", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "unknown target layer 'features.99'" in error and "features.2 (64x16x16)" in error
    (tmp_path / "taken.png").write_bytes(b"x")
    assert main(["explain", str(run_dir), str(images[0]), "--out", str(tmp_path / "taken.png")]) == 2
    assert f"--out {tmp_path / 'taken.png'} is a file" in capsys.readouterr().err


def test_explain_walks_a_folder_and_names_a_missing_path(run_dir, images, tmp_path, capsys):
    out = tmp_path / "folder-out"
    assert main(["explain", str(run_dir), str(images[0].parent), "--out", str(out), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in records] == list(map(str, images)), "every image of the folder, in order"
    assert sorted(p.name for p in out.iterdir()) == ["wafer0_gradcam_" + records[0]["explained"]["label"] + ".png",
                                                     "wafer1_gradcam_" + records[1]["explained"]["label"] + ".png"]
    missing = tmp_path / "nowhere"
    assert main(["explain", str(run_dir), str(images[0]), str(missing), "--out", str(out)]) == 2
    assert f"no such file or folder: {missing}" in capsys.readouterr().err


def test_an_unreadable_image_is_skipped_with_exit_code_1(run_dir, images, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["explain", str(run_dir), str(broken), str(images[1]), "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "skipped" in captured.err and str(images[1]) in captured.out


def test_explain_applies_the_temperature_stored_in_the_run(run_dir, images, tmp_path, capsys):
    calibrated = tmp_path / "calibrated"
    shutil.copytree(run_dir, calibrated)
    update_summary(calibrated, temperature=2.5)
    assert main(["explain", str(calibrated), str(images[0]), "--out", str(tmp_path / "out"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    model = model_of(calibrated)
    with torch.no_grad():
        probabilities = (model(plain_input(images[0], model)) / 2.5).softmax(dim=1)[0]
    assert record["probability"] == pytest.approx(float(probabilities.max()), abs=1e-6)


def test_mc_dropout_reports_uncertainty_or_says_the_model_has_no_dropout(run_dir, images, tmp_path, capsys):
    from cnnkit.explain.uncertainty import mc_dropout
    from cnnkit.inference import Predictor

    dropout_run = tmp_path_factory_run(tmp_path, "mnist_cnn")  # FC 512-128-10 with nn.Dropout
    argv = ["explain", str(dropout_run), str(images[0]), "--out", str(tmp_path / "o"), "--json", "--mc-dropout", "5"]
    assert main(argv) == 0
    [record] = json.loads(capsys.readouterr().out)
    predictor = Predictor.from_run(dropout_run)
    batch = predictor.preprocess([str(images[0])]).batch
    expected = mc_dropout(predictor.model, batch, samples=5, generator=torch.Generator().manual_seed(0))
    predicted = CLASSES.index(record["label"])
    assert record["mc_dropout"]["mean_probability"] == pytest.approx(float(expected.mean[0, predicted]), abs=1e-6)
    assert record["mc_dropout"]["mutual_information"] == pytest.approx(float(expected.mutual_information[0]), abs=1e-6)
    assert main(["explain", str(run_dir), *map(str, images), "--out", str(tmp_path / "p"), "--mc-dropout", "5"]) == 2
    assert not list((tmp_path / "p").glob("*")), "refused before any map is made, not after the first image"
    error = capsys.readouterr().err
    assert "--mc-dropout: compact_cnn" in error and "has no dropout layer" in error


def tmp_path_factory_run(tmp_path: Path, name: str) -> Path:
    """A run of zoo model `name` with seeded weights, as summary.json + best.safetensors."""
    run = tmp_path / name
    run.mkdir()
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(CLASSES), in_chans=1)
    save_file(model.state_dict(), str(run / "best.safetensors"))
    (run / "summary.json").write_text(json.dumps({
        "model_name": name, "class_names": CLASSES, "default_cfg": model.default_cfg.to_dict()}))
    return run


def test_images_of_the_same_name_and_class_names_with_a_slash_get_their_own_files(run_dir, images, tmp_path, capsys):
    """a/wafer0.png and b/wafer0.png both keep their overlay (the second overwrote the first), and
    a class called "edge/loc" is one file name, not a folder that does not exist (the image was skipped)."""
    twins = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        twins.append(tmp_path / folder / "wafer0.png")
        shutil.copy(images[0 if folder == "a" else 1], twins[-1])
    slashed = tmp_path / "slashed"
    shutil.copytree(run_dir, slashed)
    summary = json.loads((slashed / "summary.json").read_text())
    (slashed / "summary.json").write_text(json.dumps({**summary, "class_names": ["edge/loc", "donut", "scratch"]}))
    out = tmp_path / "out"
    argv = ["explain", str(slashed), *map(str, twins), "--class", "edge/loc", "--out", str(out), "--json", "--raw"]
    assert main(argv) == 0
    records = json.loads(capsys.readouterr().out)
    assert [Path(r["overlay"]).name for r in records] == ["wafer0_gradcam_edge_loc.png", "wafer0_gradcam_edge_loc-2.png"]
    assert [Path(r["raw"]).name for r in records] == ["wafer0_gradcam_edge_loc.npy", "wafer0_gradcam_edge_loc-2.npy"]
    first, second = (np.load(r["raw"]) for r in records)
    assert not np.array_equal(first, second), "two images, two maps"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [Path(r[key]).name for r in records for key in ("overlay", "raw")])
