"""`cnnkit demo --engine numpy`: the CLI prints per-epoch progress and the scores; the engine CNN learns every
class; it scores exactly the splits the torch demo trains and scores."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.data.wafer import WAFER_CLASSES
from cnnkit.train.demo import prepared_wafer_data
from cnnkit.train.demo_scores import confusion_matrix
from cnnkit.train.engine_demo import DemoConfig, cosine_learning_rate, demo_splits, run_demo


def test_cli_demo_prints_epochs_accuracy_and_confusion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--engine", "numpy", "--epochs", "3", "--n-per-class", "80", "--size", "24", "--seed", "1"]) == 0
    output = capsys.readouterr().out
    epoch_lines = re.findall(r"^epoch +(\d)/3 +train loss ([\d.]+) +train acc ([\d.]+) +val acc ([\d.]+)", output, re.M)
    assert [int(line[0]) for line in epoch_lines] == [1, 2, 3]
    losses = [float(line[1]) for line in epoch_lines]
    assert losses[-1] < losses[0]
    accuracy = float(re.search(r"^test accuracy: ([\d.]+)", output, re.M).group(1))
    assert accuracy > 0.5  # chance is 1/9
    assert re.search(r"^engine CNN +[\d,]+ +[\d.]+% +[\d.]+% +[\d.]+ +[\d.]+% +[\d.]+ +[\d.]+% -> +[\d.]+%$",
                     output, re.M), output
    for name in WAFER_CLASSES:
        # The confusion tables on the test and on the shifted test.
        assert len(re.findall(rf"^ *{name} +(\d+ +){{9}} *[\d.]+%$", output, re.M)) == 2, f"confusion rows of {name}"


def test_cli_demo_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--engine", "numpy", "--size", "8"]) == 2
    assert "--size must be >= 16" in capsys.readouterr().err
    assert main(["demo", "--engine", "numpy", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err


def test_demo_beats_90_percent_and_learns_every_class() -> None:
    """Issue 2's bar: the engine's small CNN beats 90% test accuracy on 32x32 maps.

    Measured (seed 0): 0.941, scratch recall 0.77 the lowest, in about 10 s on one thread. At 150
    maps per class this run measured 0.908 to 0.913, too close to 0.9 to hold the bar, which the
    test had been lowered to 0.85 for; the default demo (300 per class) measured 0.973.
    """
    result = run_demo(DemoConfig(epochs=6, n_per_class=200, seed=0))
    assert result.test_accuracy > 0.9
    recall = np.diag(result.confusion) / result.confusion.sum(axis=1)
    assert np.all(recall >= 0.6), dict(zip(WAFER_CLASSES, np.round(recall, 2)))
    assert result.confusion.sum() == 9 * 30  # 15% of 200 per class in the test split
    assert [record.epoch for record in result.history] == list(range(1, 7))
    splits = result.scores.splits
    assert splits["test"].accuracy == result.test_accuracy and splits["train"].confusion.sum() == 9 * 140
    assert splits["shifted"].confusion.sum() == 9 * 30 and 0 <= splits["shifted"].macro_f1 <= 1


def test_engine_and_torch_demos_use_the_same_splits() -> None:
    """Both demos read `demo_splits(config)`: the engine scores its labels, the trainer gets its maps."""
    config = DemoConfig(epochs=1, n_per_class=10, size=16, seed=5)
    splits = demo_splits(config)
    result = run_demo(config)
    for name in ("train", "test", "shifted"):
        np.testing.assert_array_equal(result.scores.splits[name].confusion.sum(axis=1),
                                      np.bincount(splits[name].labels, minlength=9))
    prepared = prepared_wafer_data(splits)
    for name in ("train", "val", "test"):
        dataset = prepared.splits[name]
        np.testing.assert_array_equal(dataset.images[:, 0], np.array([0, 128, 255], np.uint8)[splits[name].maps])
        assert dataset.targets == splits[name].labels.tolist()
    np.testing.assert_array_equal(demo_splits(config)["shifted"].maps, splits["shifted"].maps)


def test_confusion_matrix_counts_true_rows_predicted_columns() -> None:
    matrix = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 2]), 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])


def test_cosine_learning_rate_starts_at_base_and_decays() -> None:
    rates = [cosine_learning_rate(1.0, epoch, 4) for epoch in range(1, 5)]
    assert rates[0] == 1.0 and rates == sorted(rates, reverse=True)
    assert rates[2] == pytest.approx(0.5)
