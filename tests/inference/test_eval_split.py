"""`cnnkit eval` measures a run on its held-out split: test, else val; never the training data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnkit.cli import main
from colour_folders import write_colour_folders


def test_eval_of_train_val_data_measures_val_not_train(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Data given as train/val had no "test", and eval took the first split: the training data."""
    data = tmp_path / "data"
    for split, images in (("train", 12), ("val", 6)):
        write_colour_folders(data / split, (("blue", 2), ("red", 0)), images=images, size=(16, 16),
                             noise_below=80, channel_from=170)
    run = tmp_path / "run"
    assert main(["train", str(data), "--model", "compact_cnn", "--epochs", "1", "--batch-size", "8",
                 "--img-size", "16", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "val"
    assert sum(map(sum, result["confusion"])) == 12  # the 2 x 6 val images, not the 24 training ones
