"""`cnnkit compare`: the Pareto front on hand-made points, macro-F1 by hand, and the command's outputs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from tiny_runs import make_tiny_folder

from cnnkit.cli import main
from cnnkit.deploy.compare import macro_f1, pareto_front


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
                 "--img-size", "16", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    with (out / "compare.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["compact_cnn", "mnist_cnn"]
    assert {"params", "macs", "test_top1", "macro_f1", "latency_p50_ms_b1_torch", "images_per_s_b32_torch",
            "size_bytes", "pareto"} <= set(rows[0])
    assert int(rows[0]["params"]) > int(rows[1]["params"]) > 0 and int(rows[0]["macs"]) > 0
    assert all(float(r["latency_p50_ms_b1_torch"]) > 0 and float(r["images_per_s_b32_torch"]) > 0 for r in rows)
    front = pareto_front([float(r["test_top1"]) for r in rows], [float(r["latency_p50_ms_b1_torch"]) for r in rows])
    assert [bool(int(r["pareto"])) for r in rows] == front and any(front)
    starred = [line.split()[1] for line in printed.splitlines() if line.startswith("* ")]
    assert starred == [r["model"] for r, on in zip(rows, front) if on]
    assert (out / "pareto.png").stat().st_size > 5000
    assert int(rows[0]["size_bytes"]) == (out / "compact_cnn" / "best.safetensors").stat().st_size
    # finished runs compare without retraining
    assert main(["compare", str(data), "--runs", str(out / "mnist_cnn"), "--out", str(tmp_path / "again")]) == 0
    assert "mnist_cnn" in capsys.readouterr().out
