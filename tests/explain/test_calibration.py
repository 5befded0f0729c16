"""Calibration metrics against torchmetrics (fixture) and temperature scaling on known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.explain import calibration_metrics, fit_temperature
from cnnkit.explain.calibration import reliability_bins

FIXTURE = Path(__file__).parent / "fixtures" / "calibration_reference.json"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text())


def test_ece_and_mce_equal_torchmetrics(reference: dict) -> None:
    probabilities = torch.from_numpy(np.array(reference["probabilities"], dtype=np.float32))
    labels = torch.tensor(reference["labels"])
    metrics = calibration_metrics(probabilities, labels, bins=reference["bins"])
    assert metrics["ece"] == pytest.approx(reference["ece_l1"], abs=1e-6)
    assert metrics["mce"] == pytest.approx(reference["mce_max"], abs=1e-6)


def test_confidence_one_has_its_own_bin(reference: dict) -> None:
    """torchmetrics' convention: bins are [k/15, (k+1)/15) and a confidence of exactly 1 gets a bin of its own."""
    probabilities = torch.from_numpy(np.array(reference["probabilities"], dtype=np.float32))
    table = reliability_bins(probabilities, torch.tensor(reference["labels"]), bins=15)
    exactly_one = int((probabilities.max(dim=1).values == 1).sum())
    assert exactly_one >= 5 and int(table.counts[-1]) == exactly_one
    assert table.edges.shape == (16,) and float(table.edges[-1]) == 1.0
    assert int(table.counts.sum()) == len(probabilities)


def test_nll_and_brier_match_their_definitions() -> None:
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.5, 0.0]])
    labels = torch.tensor([0, 1, 1])
    metrics = calibration_metrics(probabilities, labels)
    assert metrics["nll"] == pytest.approx(-(np.log(0.7) + np.log(0.1) + np.log(0.5)) / 3)
    brier = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.9**2 + 0.8**2) + (0.5**2 + 0.5**2)) / 3
    assert metrics["brier"] == pytest.approx(brier)
    assert metrics["accuracy"] == pytest.approx(1 / 3)  # argmax of a tie picks the first class


def test_perfectly_calibrated_predictions_have_small_ece() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 5, generator=generator) * 2
    probabilities = logits.softmax(dim=1)
    labels = torch.multinomial(probabilities, 1, generator=generator)[:, 0]
    assert calibration_metrics(probabilities, labels)["ece"] < 0.02


def _tempered_problem(temperature: float, n: int = 20000, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(z); the model reports logits z * temperature (over-confident)."""
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(n, k, generator=generator, dtype=torch.float64) * 1.5
    labels = torch.multinomial(z.softmax(dim=1), 1, generator=generator)[:, 0]
    return z * temperature, labels


def test_fit_temperature_recovers_three() -> None:
    logits, labels = _tempered_problem(3.0)
    temperature = fit_temperature(logits.float(), labels)
    assert temperature == pytest.approx(3.0, abs=0.05)
    assert torch.equal((logits / temperature).argmax(dim=1), logits.argmax(dim=1)), "accuracy unchanged"
    before = calibration_metrics(logits.softmax(dim=1), labels)
    after = calibration_metrics((logits / temperature).softmax(dim=1), labels)
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"] / 3
    assert after["accuracy"] == before["accuracy"]


def test_bad_inputs_name_the_argument() -> None:
    with pytest.raises(CnnkitError, match="logits"):
        calibration_metrics(torch.randn(4, 3) * 5, torch.zeros(4, dtype=torch.long))
    with pytest.raises(CnnkitError, match="labels"):
        calibration_metrics(torch.full((4, 3), 1 / 3), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(CnnkitError, match="bins"):
        calibration_metrics(torch.full((4, 3), 1 / 3), torch.zeros(4, dtype=torch.long), bins=0)
    with pytest.raises(CnnkitError, match="logits"):
        fit_temperature(torch.randn(4), torch.zeros(4, dtype=torch.long))
    logits = torch.randn(50, 4)
    with pytest.raises(CnnkitError, match="no minimum"):
        fit_temperature(logits, logits.argmax(dim=1))


def test_logits_no_better_than_chance_are_refused_not_fitted_to_a_huge_temperature() -> None:
    """The NLL is convex in 1/T with slope mean(mean logit - true logit) at 1/T = 0: when that is
    >= 0 it keeps falling as T grows (a fit ran off to T ~ 1e8, whose uniform probabilities tie
    and change the argmax); just above chance, a finite T is found and the argmax is kept."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (40,), generator=generator)
    wrong = 2.0 * torch.nn.functional.one_hot(1 - labels, 2).double() + 0.1 * torch.randn(40, 2, generator=generator,
                                                                                              dtype=torch.float64)
    wrong[:5] = wrong[:5].flip(1)  # a few right, so it is not the all-correct case either
    with pytest.raises(CnnkitError, match="no better than chance"):
        fit_temperature(wrong, labels)
    better = wrong.clone()
    better[5:30] = better[5:30].flip(1)  # 30 of 40 right, all with a margin near 2: a finite T near 1.8
    temperature = fit_temperature(better, labels)
    assert 1.5 < temperature < 2.2  # 1 / T = log(30 / 10) / 2 for logit margins of exactly 2
    assert torch.equal((better / temperature).float().softmax(1).argmax(1), better.argmax(1))


def test_the_reliability_diagram_draws_saturated_predictions_too() -> None:
    """Confidence exactly 1 has a bin of its own for ECE; the diagram draws it within the last
    bin, so the curve and the histogram show every item (here 3 of 5 are saturated)."""
    from cnnkit.explain.analysis_plots import plot_reliability

    probabilities = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.4], [0.55, 0.45]])
    labels = torch.tensor([0, 0, 1, 1, 0])
    figure = plot_reliability({"model": reliability_bins(probabilities, labels, bins=10)})
    diagram, histogram = figure.axes
    curve = diagram.lines[-1]
    assert list(curve.get_xdata()) == pytest.approx([0.55, 0.6, 1.0])
    assert list(curve.get_ydata()) == pytest.approx([1.0, 0.0, 1.0])
    shares = [bar.get_height() for bar in histogram.patches]
    assert sum(shares) == pytest.approx(1.0) and shares[-1] == pytest.approx(0.6)
