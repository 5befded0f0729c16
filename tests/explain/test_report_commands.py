"""`cnnkit interpret | calibrate | report` on a tiny wafer run, checked against the run's own
evaluation, a recomputation, and a headless browser."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.explain import fit_temperature
from cnnkit.explain.interpret import split_logits
from cnnkit.explain.run_access import calibration_split, open_run
from cnnkit.inference import Predictor

from browser import headless_chromium

LAPTOP = (1366, 768)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "wafer"
    code = main(["train", "wafer", "--model", "compact_cnn", "--epochs", "2", "--batch-size", "32", "--lr", "0.003",
                 "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_interpret_agrees_with_the_run_and_recomputed_losses(run_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert main(["interpret", str(run_dir), "wafer", "--out", str(tmp_path), "--top-losses", "6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert result["split"] == "test"
    assert result["confusion"] == summary["test_confusion"], "same confusion as the trainer's own test evaluation"
    recalls = [result["per_class"][name]["recall"] for name in summary["class_names"]]
    assert recalls == pytest.approx(summary["test_per_class"])
    assert result["mean_loss"] == pytest.approx(summary["test"]["test_loss"], rel=1e-4)
    assert {p.name for p in tmp_path.iterdir()} >= {"interpretation.json", "confusion.png", "top_losses.png"}
    top = result["top_losses"]
    assert len(top) == 6 and [t["loss"] for t in top] == sorted((t["loss"] for t in top), reverse=True)
    assert all(t["path"] is None for t in top), "wafer maps are made in memory: no file to name"
    # Each kept index, re-read and re-run, gives the loss and classes recorded for it.
    run = open_run(run_dir, "wafer")
    _, inputs, labels = run.items("test", [t["index"] for t in top])
    with torch.no_grad():
        logits = run.model(inputs)
    losses = F.cross_entropy(logits, torch.tensor(labels), reduction="none")
    assert losses.tolist() == pytest.approx([t["loss"] for t in top], rel=1e-4)
    names = summary["class_names"]
    assert [names[i] for i in labels] == [t["true"] for t in top]
    assert [names[i] for i in logits.argmax(dim=1).tolist()] == [t["predicted"] for t in top]
    largest = F.cross_entropy(*split_logits(run, "test", batch_size=50), reduction="none").sort(descending=True).values
    assert largest[:6].tolist() == pytest.approx([t["loss"] for t in top], rel=1e-4), "they are the 6 largest"


def test_calibrate_stores_the_fitted_temperature(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    plot = tmp_path / "reliability.png"
    assert main(["calibrate", str(run_dir), "wafer", "--json", "--plot", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "val"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["temperature"] == pytest.approx(result["temperature"])
    assert summary["test_confusion"], "the rest of summary.json is kept"
    assert not list(run_dir.glob(".summary*")), "no temporary file left"
    assert Predictor.from_run(run_dir).temperature == pytest.approx(result["temperature"]), "predictions apply it"
    logits, labels = split_logits(open_run(run_dir, "wafer"), "val")
    assert result["temperature"] == pytest.approx(fit_temperature(logits, labels), rel=1e-6)
    assert result["after"]["nll"] <= result["before"]["nll"] + 1e-12
    assert result["after"]["accuracy"] == result["before"]["accuracy"]
    assert Image.open(plot).size[0] > 100


def test_without_a_val_split_the_train_split_is_used_and_said(run_dir: Path) -> None:
    run = open_run(run_dir, "wafer")
    splits = {name: data for name, data in run.data.splits.items() if name != "val"}
    split, note = calibration_split(dataclasses.replace(run, data=dataclasses.replace(run.data, splits=splits)))
    assert split == "train" and "no val split" in note
    assert calibration_split(run) == ("val", None)


def test_errors_name_the_problem(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert main(["interpret", str(run_dir), "wafer", "--split", "holdout", "--out", str(tmp_path)]) == 2
    assert "no split 'holdout'" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path), "wafer"]) == 2
    assert "summary.json is missing" in capsys.readouterr().err
    digits = tmp_path / "digits"
    for name in ("zero", "one"):
        (digits / name).mkdir(parents=True)
        for i in range(10):
            Image.new("L", (32, 32), color=20 * i).save(digits / name / f"{i}.png")
    assert main(["report", str(run_dir), str(digits), "--out", str(tmp_path / "r.html")]) == 2
    assert "the dataset has 20 items" in capsys.readouterr().err, "another dataset than the run's is refused"


def _check_self_contained(html: str) -> None:
    assert "<script" not in html.lower() and "@font-face" not in html and "@import" not in html
    assert not re.search(r"(src|href)\s*=\s*[\"'](?!data:|#)", html), "every resource is inline"
    assert not re.search(r"url\(", html) and "http://" not in html and "https://" not in html


def test_report_is_self_contained_and_renders_on_a_laptop(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "wafer", "--out", str(out), "--top-losses", "6", "--per-class", "2"]) == 0
    html = out.read_text()
    _check_self_contained(html)
    for anchor in ("run", "data", "curves", "metrics", "confusion", "classes", "confused", "trust", "losses",
                   "gallery", "calibration", "filters", "model"):
        assert f'id="{anchor}"' in html
    # A small-image run: the report says, from the model at the run's 32x32 input, which map to trust.
    trust = re.search(r'<section id="trust">(.*?)</section>', html, re.S).group(1)
    assert "32x32 inputs the default layer features gives 4x4 cells" in trust
    assert "trust LayerCAM at features.2 (16x16)" in trust and "explain_wafer" in trust
    assert "The maps in this report are gradcam at features; for layercam at features.2: cnnkit report RUN DATA " \
           "--cam-method layercam --cam-layer features.2." in trust
    assert "compact_cnn" in html and "MACs per image" in html and "macro avg" in html
    with headless_chromium(*LAPTOP) as driver:
        driver.get(out.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
        assert len(images) >= 6 + 9 * 1 + 3, "top losses, per-class gallery, curves, confusion, calibration"
        broken = [alt for complete, width, alt in images if not complete or width == 0]
        assert not broken, f"images that did not load: {broken}"
        scroll_width, inner_width = driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll_width <= inner_width, f"horizontal overflow: {scroll_width} > {inner_width}"
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(LAPTOP[0], min(height + 150, 12000))
        screenshot = tmp_path / "report.png"
        driver.save_screenshot(str(screenshot))
    assert Image.open(screenshot).size[0] >= LAPTOP[0] - 20


def test_report_galleries_carry_class_activation_maps(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "wafer", "--out", str(out), "--top-losses", "2", "--per-class", "1"]) == 0
    html = out.read_text()
    tile = re.search(r'<section id="losses">.*?src="data:image/png;base64,([^"]+)"', html, re.S).group(1)
    import base64

    width, height = Image.open(io.BytesIO(base64.b64decode(tile))).size
    assert width > 1.9 * height, "each top loss shows the image and its map side by side"


def test_the_advice_says_when_the_report_follows_it(run_dir: Path) -> None:
    from cnnkit.explain.report import _cam_advice

    run = open_run(run_dir, "wafer")
    assert _cam_advice(run, "layercam", "features.2", torch.device("cpu")).endswith(
        "The maps in this report are layercam at features.2.")
    assert "--cam-layer features.2" in _cam_advice(run, "layercam", None, torch.device("cpu"))


def test_top_loss_tiles_map_the_predicted_class(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gallery asks the CAM family for the predicted class of each top loss and puts the
    overlay beside the image (stand-ins for cam/overlay record the call)."""
    import numpy as np

    import cnnkit.explain.visuals as visuals
    from cnnkit.explain.interpret import interpret_split

    calls = {}

    def fake_cam(model, images, *, method, target_layer, classes):
        calls.update(method=method, layer=target_layer, classes=classes, shape=tuple(images.shape))
        return torch.zeros(images.shape[0], *images.shape[2:])

    monkeypatch.setattr(visuals, "cam", fake_cam)
    monkeypatch.setattr(visuals, "overlay", lambda image, heat: np.full_like(image, 7))
    run = open_run(run_dir, "wafer")
    interpretation, _, _ = interpret_split(run, "test", top_k=3)
    images, captions = visuals.top_loss_tiles(run, interpretation, method="layercam", layer="features.2")
    assert calls["classes"] == [item.predicted for item in interpretation.top_losses]
    assert (calls["method"], calls["layer"], calls["shape"]) == ("layercam", "features.2", (3, 1, 32, 32))
    assert images[0].shape == (32, 32 + 2 + 32, 3) and (images[0][:, -32:] == 7).all()
    names = interpretation.class_names
    assert f"pred {names[interpretation.top_losses[0].predicted]}" in captions[0]


def test_an_unknown_gallery_layer_or_method_is_refused_before_the_pass_over_the_data(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import cnnkit.explain.report as report
    import cnnkit.explain.report_commands as commands

    def no_pass(*args, **kwargs):
        raise AssertionError("the data was streamed before the layer was checked")

    monkeypatch.setattr(report, "interpret_split", no_pass)
    monkeypatch.setattr(commands, "interpret_split", no_pass)
    capsys.readouterr()
    for command in (["report", "--out", str(tmp_path / "r.html")], ["interpret", "--out", str(tmp_path)]):
        assert main([command[0], str(run_dir), "wafer", *command[1:], "--cam-layer", "features.99"]) == 2
        error = capsys.readouterr().err
        assert "unknown target layer 'features.99'" in error and "features.2 (64x16x16)" in error
    with pytest.raises(CnnkitError, match="unknown CAM method 'gradcam3'"):
        report.build_report(run_dir, "wafer", cam_method="gradcam3")
    with pytest.raises(SystemExit):
        main(["report", str(run_dir), "wafer", "--cam-method", "gradcam3"])
    assert "invalid choice: 'gradcam3'" in capsys.readouterr().err


def test_without_a_test_split_the_report_is_on_val_and_says_calibration_is_in_sample(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset with given train/val folders only (hymenoptera's layout): the report analyses
    val, not the training data, and says that the temperature was fitted on that same split."""
    import cnnkit.explain.report as report
    from cnnkit.explain.report_html import render_report

    run = open_run(run_dir, "wafer")
    no_test = {name: data for name, data in run.data.splits.items() if name != "test"}
    assert list(no_test)[0] == "train"
    run = dataclasses.replace(run, data=dataclasses.replace(run.data, splits=no_test))
    assert run.split_name(None) == "val"
    monkeypatch.setattr(report, "open_run", lambda *args, **kwargs: run)
    content = report.build_report(run_dir, "wafer", top_losses=2, per_class=1)
    assert content.interpretation.split == "val"
    assert sum(content.interpretation.confusion.sum(dim=1).tolist()) == len(no_test["val"])
    assert any("no test split" in note for note in content.notes)
    assert any("fitted on the val split the calibration is shown on" in note for note in content.notes)
    html = render_report(content)
    assert "On the val split." in html and "in-sample" in html


def test_empty_splits_are_passed_over_or_refused_by_name(run_dir: Path) -> None:
    """A cut of a tiny dataset (2 items a class) leaves test empty: the analysis takes the next
    split with items, calibration the train split, and an empty requested split is an error (an
    empty test made the report fail inside torch.cat)."""
    from cnnkit.errors import CnnkitError

    run = open_run(run_dir, "wafer")
    empty = run.data.splits["test"].subset([])
    run = dataclasses.replace(run, data=dataclasses.replace(run.data, splits={**run.data.splits, "test": empty}))
    assert run.split_name(None) == "val" and calibration_split(run) == ("val", None)
    with pytest.raises(CnnkitError, match="split 'test' of .* has no items"):
        run.split_name("test")
    run = dataclasses.replace(run, data=dataclasses.replace(run.data, splits={**run.data.splits, "val": empty}))
    assert run.split_name(None) == "train"
    split, note = calibration_split(run)
    assert split == "train" and "no val split with items" in note


def test_an_out_path_of_the_wrong_kind_is_refused_before_any_work(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """report --out DIR (the HTML file is wanted), interpret --out FILE (a directory is wanted) and
    calibrate --plot DIR failed with a raw OSError only after the whole computation (calibrate
    after storing the temperature)."""
    import cnnkit.explain.report as report
    import cnnkit.explain.report_commands as commands

    def no_work(*args, **kwargs):
        raise AssertionError("the work was done before --out was checked")

    monkeypatch.setattr(report, "build_report", no_work)
    monkeypatch.setattr(commands, "interpret_split", no_work)
    capsys.readouterr()
    assert main(["report", str(run_dir), "wafer", "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a directory" in capsys.readouterr().err
    (tmp_path / "taken.txt").write_text("x")
    assert main(["interpret", str(run_dir), "wafer", "--out", str(tmp_path / "taken.txt")]) == 2
    assert "is a file: give a directory" in capsys.readouterr().err
    before = (run_dir / "summary.json").read_text()
    assert main(["calibrate", str(run_dir), "wafer", "--plot", str(tmp_path)]) == 2
    assert f"--plot {tmp_path} is a directory" in capsys.readouterr().err
    assert (run_dir / "summary.json").read_text() == before, "nothing stored by a failed call"


def test_a_fine_tuning_reports_its_phases_curves_and_best_epoch(tmp_path: Path) -> None:
    """A `cnnkit finetune` run keeps metrics.csv per phase: the report draws them one after another (it said
    'The run has no metrics.csv'), and gives the best epoch as training printed it ('phase 2 epoch 1'; it said
    'epoch 1', the epoch within the last phase)."""
    from colour_folders import make_tiny_folder

    from cnnkit.explain.report import _metrics_rows, build_report

    data = make_tiny_folder(tmp_path / "tiny")
    out = tmp_path / "ft"
    assert main(["finetune", str(data), "--model", "compact_cnn", "--phases", "head:1,all:2", "--img-size", "16",
                 "--batch-size", "8", "--out", str(out), "--quiet"]) == 0
    run = open_run(out, str(data))
    rows = _metrics_rows(out, run.summary)
    assert [row["epoch"] for row in rows] == ["0", "1", "2"], "three epochs across the two phases"
    content = build_report(out, str(data), top_losses=2, per_class=1)
    assert content.learning_curves is not None
    best = dict(content.run_facts)["best epoch"]
    assert best.startswith(f"phase 2 epoch {run.summary.best_epoch + 1} (val_top1 "), best


def test_interpret_names_the_file_of_each_top_loss(trained_run: Path, tiny_folder: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """A top loss of an image folder carries its file (it had only an index into a split), and the file,
    predicted alone, has that loss; data held in memory (wafer) has none to name."""
    assert main(["interpret", str(trained_run), str(tiny_folder), "--out", str(tmp_path), "--top-losses", "3",
                 "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["top_losses"]
    assert top == json.loads((tmp_path / "interpretation.json").read_text())["top_losses"]
    predictor = Predictor.from_run(trained_run)
    names = list(predictor.class_names)
    for item in top:
        assert Path(item["path"]).parent.name == item["true"], "the file lies in its class's folder"
        logits = predictor.logits([item["path"]])
        loss = F.cross_entropy(logits, torch.tensor([names.index(item["true"])]))
        assert float(loss) == pytest.approx(item["loss"], rel=1e-4, abs=1e-6)
