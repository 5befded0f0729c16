"""`cnnkit conv` and `cnnkit summary` through cnnkit.cli.main, output checked with capsys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cnnkit
from cnnkit import cli

ZOO_JSON = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "zoo.json"


@pytest.fixture(autouse=True)
def analysis_commands_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only this package's sub-commands: the test must not depend on other packages' commands.
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("cnnkit.analysis.commands",))


def test_conv_prints_size_params_macs_and_separable_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["conv", "--in", "224", "--kernel", "7", "--stride", "2", "--padding", "3", "--in-ch", "3", "--out-ch", "64"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "output size: 112x112" in out
    # 64 x 3 x 7 x 7 = 9,408 weights (+64 biases); x 112 x 112 positions = 118,013,952 MACs.
    assert "parameters: 9,472 with bias, 9,408 without" in out
    assert "MACs: 118,013,952" in out
    # Separable: 3 x 49 + 3 x 64 = 339 parameters, 339 / 9408 = 0.036.
    assert "339 parameters" in out and "ratio 0.036" in out


def test_conv_error_exits_2_naming_the_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["conv", "--in", "8", "--kernel", "3", "--groups", "2", "--in-ch", "3", "--out-ch", "4"]) == 2
    assert "cnnkit conv: error: in_channels (3) is not divisible by groups (2)" in capsys.readouterr().err


def test_summary_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["summary", "resnet18", "--input", "3,224"]) == 2
    assert "--input must be C,H,W" in capsys.readouterr().err


def test_summary_of_unknown_model_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["summary", "no_such_net"]) == 2
    assert "unknown model 'no_such_net'" in capsys.readouterr().err


def test_summary_prints_the_published_totals(capsys: pytest.CaptureFixture[str]) -> None:
    if not ZOO_JSON.is_file():
        pytest.skip(f"published figures not found at {ZOO_JSON}")
    if "resnet18" not in cnnkit.list_models():
        pytest.skip("resnet18 is not registered in the zoo yet")
    published = json.loads(ZOO_JSON.read_text())["models"]["resnet18"]
    assert cli.main(["summary", "resnet18", "--input", "3,224,224"]) == 0
    out = capsys.readouterr().out
    assert f"Total params: {published['params']:,}" in out
    assert f"Total MACs: {int(published['macs']):,}" in out
    assert "conv1 (Conv2d)" in out and "1x64x112x112" in out


def test_summary_num_classes_resizes_the_head(capsys: pytest.CaptureFixture[str]) -> None:
    if "resnet18" not in cnnkit.list_models():
        pytest.skip("resnet18 is not registered in the zoo yet")
    assert cli.main(["summary", "resnet18", "--input", "3,64,64", "--num-classes", "7"]) == 0
    out = capsys.readouterr().out
    # The head is Linear(512, 7): 512 x 7 + 7 parameters.
    assert "fc (Linear)" in out and "1x7" in out and "3,591" in out
