"""The one entry point (format recognition, derived splits, wafer) and `cnnkit data inspect|stats`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnkit.cli import main
from cnnkit.data.sources import open_dataset, open_source
from cnnkit.data.wafer import WAFER_CLASSES, make_wafer_maps
from cnnkit.errors import CnnkitError


def _run_data(argv: list[str]) -> int:
    """Run `cnnkit data ...` through the real command-line entry point."""
    return main(["data", *argv])


def test_unknown_path_is_a_clear_error(tmp_path):
    with pytest.raises(CnnkitError, match="not a path, and not the built-in name 'wafer'"):
        open_source(tmp_path / "missing")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(CnnkitError, match=r"x\.csv: a dataset file must be \.npz"):
        open_source(tmp_path / "x.csv")


def test_wafer_source_is_grey_levels_of_the_maps():
    source = open_source("wafer", wafer_per_class=3, seed=4)
    maps = make_wafer_maps(3, rng=np.random.default_rng(4))
    assert source.format == "wafer" and source.classes == list(WAFER_CLASSES)
    image, label = source.dataset()[5]
    assert image.dtype == torch.uint8 and image.shape == (1, 32, 32) and label == maps.labels[5]
    levels = {0: 0, 1: 128, 2: 255}
    assert np.array_equal(image[0].numpy(), np.vectorize(levels.get)(maps.maps[5]))


def test_derived_splits_with_transform():
    train = open_dataset("wafer", "train", seed=1, wafer_per_class=20, transform=lambda x: x.float() / 255)
    test = open_dataset("wafer", "test", seed=1, wafer_per_class=20)
    assert len(train) == 9 * 14 and len(test) == 9 * 3
    assert not set(train.indices) & set(test.indices)
    image, _ = train[0]
    assert image.dtype == torch.float32 and float(image.max()) <= 1.0
    with pytest.raises(CnnkitError, match="has no split 'holdout'"):
        open_dataset("wafer", "holdout", wafer_per_class=2)


def test_inspect_hymenoptera_lists_the_placeholder_gif(hymenoptera_dir, capsys):
    assert _run_data(["inspect", str(hymenoptera_dir)]) == 0
    kept = capsys.readouterr().out
    assert "bad files: 0" in kept and "format outliers (readable, kept" in kept and "imageNotFound.gif" in kept
    assert _run_data(["inspect", str(hymenoptera_dir), "--drop-outliers"]) == 0
    out = capsys.readouterr().out
    assert "train/ants/imageNotFound.gif" in out and "bad files: 1" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(("ants", "bees"))}
    assert rows == {"ants": ["123", "70"], "bees": ["121", "83"]}
    assert "modes: RGB 397" in out


def test_inspect_json_and_stats_of_an_npz(tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 256, (10, 3, 6, 5), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(10) % 2)
    assert _run_data(["inspect", str(tmp_path / "d.npz"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"all": [5, 5]} and report["sizes"]["width"] == [5, 5, 5]
    assert _run_data(["stats", str(tmp_path / "d.npz"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    scaled = images / 255.0
    assert np.allclose(stats["mean"], scaled.mean(axis=(0, 2, 3)), atol=1e-12)
    assert np.allclose(stats["std"], scaled.std(axis=(0, 2, 3)), atol=1e-12)


def test_inspect_of_an_empty_class_names_the_folder(tmp_path, capsys):
    (tmp_path / "cats").mkdir()
    assert _run_data(["inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"empty class folder: {tmp_path / 'cats'}" in err
    assert "--allow-empty" in err, "the advice names the command-line flag, not only the Python keyword"


@pytest.mark.parametrize("command", ["stats", "show"])
def test_stats_and_show_of_a_folder_with_no_readable_image_name_it(tmp_path, capsys, command):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.jpg").write_text("a text file named like an image")
    extra = ["--out", str(tmp_path / "grid.png")] if command == "show" else []
    assert _run_data([command, str(tmp_path), *extra]) == 2
    assert f"{tmp_path}: no readable image (1 bad file(s)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["stats", "wafer", "--max-items", "0"], ["inspect", "wafer", "--workers", "0"],
             ["inspect", "wafer", "--max-pixels", "-5"], ["show", "wafer", "--out", "g.png", "--n", "0"]]
)
def test_counts_below_one_are_refused_naming_the_option(capsys, argv):
    with pytest.raises(SystemExit) as stopped:
        _run_data(argv)
    assert stopped.value.code == 2 and f"{argv[-2]}: must be >= 1" in capsys.readouterr().err
