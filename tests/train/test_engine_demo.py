"""`cnnkit demo --engine numpy`: the CLI prints per-epoch progress and a test accuracy; the engine CNN learns every class."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.data.wafer import WAFER_CLASSES
from cnnkit.train.engine_demo import DemoConfig, confusion_matrix, cosine_learning_rate, run_demo


def test_cli_demo_prints_epochs_accuracy_and_confusion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--engine", "numpy", "--epochs", "3", "--n-per-class", "80", "--size", "24", "--seed", "1"]) == 0
    output = capsys.readouterr().out
    epoch_lines = re.findall(r"^epoch +(\d)/3 +train loss ([\d.]+) +train acc ([\d.]+) +val acc ([\d.]+)", output, re.M)
    assert [int(line[0]) for line in epoch_lines] == [1, 2, 3]
    losses = [float(line[1]) for line in epoch_lines]
    assert losses[-1] < losses[0]
    accuracy = float(re.search(r"^test accuracy: ([\d.]+)", output, re.M).group(1))
    assert accuracy > 0.5  # chance is 1/9
    for name in WAFER_CLASSES:
        assert re.search(rf"^ *{name} +(\d+ +){{9}} *[\d.]+%$", output, re.M), f"no confusion row for {name}"


def test_cli_demo_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--engine", "numpy", "--size", "8"]) == 2
    assert "--size must be >= 16" in capsys.readouterr().err
    assert main(["demo", "--engine", "numpy", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err


def test_demo_beats_90_percent_and_learns_every_class() -> None:
    result = run_demo(DemoConfig(epochs=6, n_per_class=150, seed=0))
    assert result.test_accuracy > 0.9
    recall = np.diag(result.confusion) / result.confusion.sum(axis=1)
    assert np.all(recall >= 0.7), dict(zip(WAFER_CLASSES, np.round(recall, 2)))
    assert result.confusion.sum() == 9 * 23  # 15% of 150 per class in the test split
    assert [record.epoch for record in result.history] == list(range(1, 7))


def test_confusion_matrix_counts_true_rows_predicted_columns() -> None:
    matrix = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 2]), 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])


def test_cosine_learning_rate_starts_at_base_and_decays() -> None:
    rates = [cosine_learning_rate(1.0, epoch, 4) for epoch in range(1, 5)]
    assert rates[0] == 1.0 and rates == sorted(rates, reverse=True)
    assert rates[2] == pytest.approx(0.5)
