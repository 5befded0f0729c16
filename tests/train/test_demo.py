"""`cnnkit demo` (PyTorch path): compact CNN through the trainer, and the MLP comparison."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from torch import nn

from cnnkit.cli import main
from cnnkit.data.wafer import WAFER_CLASSES
from cnnkit.train.demo import MLP_HIDDEN, build_mlp


def test_demo_trains_the_compact_cnn_and_compares_an_mlp(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["demo", "--epochs", "4", "--n-per-class", "100", "--compare-mlp", "--out", str(tmp_path)])
    assert code == 0
    output = capsys.readouterr().out
    accuracy = float(re.search(r"^test accuracy: ([\d.]+)", output, re.M).group(1))
    assert accuracy > 0.5, output  # chance is 1/9
    for name in WAFER_CLASSES:
        assert re.search(rf"^ *{name} +(\d+ +){{9}} *[\d.]+%$", output, re.M), f"no confusion row for {name}"
    rows = dict(re.findall(r"^(compact CNN|MLP) +([\d,]+) ", output, re.M))
    assert int(rows["MLP"].replace(",", "")) > int(rows["compact CNN"].replace(",", "")), "the MLP is the larger"
    assert (tmp_path / "compact_cnn" / "summary.json").exists() and (tmp_path / "mlp" / "best.safetensors").exists()


def test_mlp_is_fully_connected_with_the_documented_widths() -> None:
    mlp = build_mlp(32 * 32, 9)
    widths = [m.out_features for m in mlp if isinstance(m, nn.Linear)]
    assert widths == [*MLP_HIDDEN, 9]
    assert not any(isinstance(m, nn.Conv2d) for m in mlp.modules())


def test_compare_mlp_needs_the_torch_engine(capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--engine", "numpy", "--compare-mlp"]) == 2
    assert "--compare-mlp needs --engine torch" in capsys.readouterr().err
