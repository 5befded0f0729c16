"""`cnnkit demo` (PyTorch path): compact CNN and MLP through the trainer, scored side by side on
train, test and the shifted test; the demo's scores (macro-F1, recall) against hand-computed answers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnnkit.cli import main
from cnnkit.data.wafer import WAFER_CLASSES
from cnnkit.inference import Predictor
from cnnkit.train.demo import MLP_HIDDEN, build_mlp
from cnnkit.train.demo_scores import SplitScores, macro_f1, per_class_recall

NUMBER = r"([\d.]+)"


def test_demo_trains_both_models_and_prints_them_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # --compare-mlp, the command line, was an unrecognised argument once the comparison became the default
    code = main(["demo", "--epochs", "6", "--n-per-class", "40", "--size", "24", "--compare-mlp",
                 "--out", str(tmp_path)])
    assert code == 0
    output = capsys.readouterr().out
    assert "loc and scratch defects in the left half in training, in the right half in the shifted test" in output
    rows = {}
    for name in ("compact CNN", "MLP"):
        match = re.search(rf"^{name} +([\d,]+) +{NUMBER}% +{NUMBER}% +{NUMBER} +{NUMBER}% +{NUMBER} +"
                          rf"{NUMBER}% -> +{NUMBER}%$", output, re.M)
        assert match, f"no side-by-side row for {name}:\n{output}"
        rows[name] = [float(v.replace(",", "")) for v in match.groups()]
        assert all(0 <= v <= 100 for v in rows[name][1:]), rows[name]
    assert rows["MLP"][0] > rows["compact CNN"][0], "the MLP is the larger"
    # Six epochs on 252 training maps: the CNN has learned something (chance is 1/9 = 11%; measured 44%).
    assert rows["compact CNN"][2] > 30, output
    recall_header = re.search(r"^ +compact CNN test +compact CNN shifted +MLP test +MLP shifted$", output, re.M)
    assert recall_header, output
    for name in WAFER_CLASSES:
        assert re.search(rf"^ *{name}( +{NUMBER}%){{4}}$", output, re.M), f"no recall row for {name}"
        # Four confusion tables: each model on the test and on the shifted test.
        assert len(re.findall(rf"^ *{name} +(\d+ +){{9}} *[\d.]+%$", output, re.M)) == 4, f"confusion rows of {name}"
    assert (tmp_path / "compact_cnn" / "summary.json").exists() and (tmp_path / "mlp" / "best.safetensors").exists()
    # The kept CNN run is a run like any other (its summary named the model "compact CNN": no command loaded it).
    predictor = Predictor.from_run(tmp_path / "compact_cnn")
    assert predictor.model_name == "compact_cnn" and predictor.class_names == WAFER_CLASSES
    assert len(predictor.predict(torch.zeros(1, 24, 24, dtype=torch.uint8), top_k=9)[0].top) == 9


def test_mlp_is_fully_connected_with_the_documented_widths() -> None:
    mlp = build_mlp(32 * 32, 9)
    widths = [m.out_features for m in mlp if isinstance(m, nn.Linear)]
    assert widths == [*MLP_HIDDEN, 9]
    assert not any(isinstance(m, nn.Conv2d) for m in mlp.modules())


def test_demo_rejects_bad_arguments(capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
    assert main(["demo", "--imbalance", "wm811k", "--n-per-class", "8"]) == 2
    assert "--n-per-class must be >= 12" in capsys.readouterr().err


@pytest.mark.parametrize("below", ["", "runs"], ids=["the file itself", "a folder under it"])
def test_demo_refuses_an_out_that_is_a_file_before_training(below: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    """It was a NotADirectoryError traceback from the trainer, after the data were made."""
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    out = taken / below if below else taken
    assert main(["demo", "--epochs", "1", "--n-per-class", "7", "--size", "16", "--out", str(out)]) == 2
    assert f"--out {out}: a file stands where the run folders would go" in capsys.readouterr().err
    assert taken.read_text() == "keep me"


def test_macro_f1_and_recall_known_answer() -> None:
    # Class 0: TP 3, FP 1, FN 1 -> F1 3/4; class 1: TP 1, FP 1, FN 2 -> 2/5; class 2: TP 1, FP 1, FN 0
    # -> 2/3; class 3 never occurs nor is predicted -> left out (scikit-learn's macro average).
    confusion = np.array([[3, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert macro_f1(confusion) == pytest.approx((3 / 4 + 2 / 5 + 2 / 3) / 3)
    recall = per_class_recall(confusion)
    np.testing.assert_allclose(recall[:3], [3 / 4, 1 / 3, 1.0])
    assert np.isnan(recall[3])
    scores = SplitScores.of(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    np.testing.assert_array_equal(scores.confusion, [[1, 0, 1], [1, 1, 0], [0, 0, 1]])
    assert scores.accuracy == pytest.approx(3 / 5)
    assert scores.macro_f1 == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)


def test_torch_demo_options_need_the_torch_engine(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--threads and --out were taken and ignored by the NumPy-engine demo."""
    assert main(["demo", "--engine", "numpy", "--compare-mlp"]) == 2
    assert "--compare-mlp need --engine torch" in capsys.readouterr().err
    assert main(["demo", "--engine", "numpy", "--epochs", "1", "--n-per-class", "12", "--size", "24",
                 "--threads", "2", "--out", str(tmp_path / "runs")]) == 2
    assert "--threads, --out need --engine torch" in capsys.readouterr().err
