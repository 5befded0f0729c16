"""`cnnkit conv` and `cnnkit summary` through cnnkit.cli.main, output checked with capsys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cnnkit
from cnnkit import cli

# ../shared/reference/zoo.json's figures, committed beside the zoo's fixtures: they are here in a user's checkout too.
PUBLISHED_JSON = Path(__file__).resolve().parents[1] / "models" / "reference" / "published.json"


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
    err = capsys.readouterr().err
    assert "unknown model 'no_such_net'" in err
    assert "resnet18" in err and "vgg16" in err, "the zoo's names, which no sub-command lists otherwise"


def test_summary_prints_the_published_totals(capsys: pytest.CaptureFixture[str]) -> None:
    published = json.loads(PUBLISHED_JSON.read_text())["resnet18"]
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


def test_conv_json_holds_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["conv", "--in", "5", "--kernel", "3", "--stride", "2", "--padding", "1", "--in-ch", "3", "--out-ch", "4"]
    assert cli.main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # 'same'-style padding with stride 2 on 5: ceil(5 / 2) = 3; 4 x 3 x 3 x 3 = 108 weights.
    assert (report["output_size"], report["params_no_bias"], report["params_with_bias"]) == (3, 108, 112)
    assert report["spec"]["stride"] == 2 and report["separable_ratio"] == pytest.approx(1 / 4 + 1 / 9)


def test_conv_stack_prints_receptive_field_and_jump(capsys: pytest.CaptureFixture[str]) -> None:
    # The ResNet-like stack of worked-examples.md: stem, pool, then 3x3s; printed elsewhere as ... 199.
    stack = "k7s2,k3s2,k3s1,k3s1,k3s2,k3s1,k3s2,k3s1,k3s2,k3s1,k3s2"
    assert cli.main(["conv", "--stack", stack]) == 0
    out = capsys.readouterr().out
    assert "receptive field of the stack: 259 pixels, jump 64" in out
    assert cli.main(["conv", "--stack", stack, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [layer["rf"] for layer in result["layers"]] == [7, 11, 19, 27, 35, 51, 67, 99, 131, 195, 259]
    assert (result["rf"], result["jump"]) == (259, 64)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["conv", "--stack", "k3,3x3"], "--stack entry '3x3' is not k<kernel>"),
        (["conv", "--stack", "k3s0"], "--stack entry 'k3s0'"),
        (["conv", "--stack", "k3", "--in", "8"], "give it without --in and --kernel"),
        (["conv", "--in", "8"], "--in and --kernel are required"),
    ],
)
def test_conv_argument_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_summary_json_has_totals_and_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["summary", "lenet5", "--input", "1,32,32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "lenet5" and result["input_shape"] == [1, 1, 32, 32]
    assert result["total_params"] == sum(row["params"] for row in result["rows"])
    assert result["flops"] == 2 * result["total_macs"] > 0
    first = result["rows"][0]
    # LeNet-5's C1: 6 5x5 filters on 32x32 -> 6x28x28, 6 x 25 + 6 = 156 parameters, RF 5.
    assert (first["kind"], first["output_shape"], first["params"], first["rf"]) == ("Conv2d", [1, 6, 28, 28], 156, 5)


def test_rf_lists_growth_and_draws_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "rf.png"
    assert cli.main(["rf", "vgg16", "--plot", str(plot), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    layers = result["layers"]
    # 13 convs, 5 max-pools and the adaptive pool (7x7 -> 7x7 at 224: no growth); after pool5
    # VGG-16 sees 212 pixels with jump 32 (Araujo et al. 2019).
    pool5 = layers[17]
    assert len(layers) == 19 and (pool5["kind"], pool5["rf"], pool5["jump"]) == ("MaxPool2d", 212, 32)
    assert [layer["depth"] for layer in layers] == list(range(1, 20))
    assert all(a["rf"] < b["rf"] for a, b in zip(layers[:18], layers[1:18]))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["rf", "vgg16"]) == 0
    assert "features.30 (MaxPool2d)" in capsys.readouterr().out


def test_a_fractional_jump_prints_as_a_fraction_and_is_a_number_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # At 32 px VGG-16's pool5 is 1x1 and AdaptiveAvgPool2d(7) repeats it: jump 32 / 7, RF still 212.
    assert cli.main(["rf", "vgg16", "--input", "3,32,32", "--json", "--plot", str(tmp_path / "rf.png")]) == 0
    avgpool = json.loads(capsys.readouterr().out)["layers"][-1]
    assert (avgpool["kind"], avgpool["rf"], avgpool["jump"]) == ("AdaptiveAvgPool2d", 212, 32 / 7)
    assert cli.main(["summary", "vgg16", "--input", "3,32,32", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["rows"]}
    assert (rows["avgpool"]["jump_hw"], rows["classifier.6"]["rf"]) == ([32 / 7, 32 / 7], 212)
    assert cli.main(["rf", "vgg16", "--input", "3,32,32"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[-2:] == ["212", "32/7"]
