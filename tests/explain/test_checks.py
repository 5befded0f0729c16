"""Pointing game, energy in mask, deletion/insertion curves, Spearman and the sanity check, on
cases with known answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.checks import (deletion_auc, deletion_curve, energy_in_mask, insertion_curve,
                                   pointing_game)
from cnnkit.explain.sanity import parameter_layers, sanity_check, spearman
from explain.reference_models import compact_input, filled


def test_pointing_game_hits_misses_and_tolerance_by_euclidean_distance():
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[:, 2:4, 2:4] = True
    maps = torch.zeros(4, 8, 8)
    maps[0, 3, 3] = 1  # on the mask
    maps[1, 3, 4] = 1  # one pixel right of it
    maps[2, 4, 4] = 1  # diagonal: sqrt(2) away
    # maps[3] is constant: it points nowhere
    assert pointing_game(maps, masks).tolist() == [True, False, False, False]
    assert pointing_game(maps, masks, tolerance_px=1).tolist() == [True, True, False, False]
    assert pointing_game(maps, masks, tolerance_px=2).tolist() == [True, True, True, False]
    with pytest.raises(CnnkitError, match="both be"):
        pointing_game(maps, masks[:, :4])


def test_energy_in_mask_is_the_share_of_positive_mass_inside():
    masks = torch.zeros(2, 2, 2, dtype=torch.bool)
    masks[:, 0, 0] = True
    maps = torch.tensor([[[3.0, 1.0], [-5.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    assert energy_in_mask(maps, masks).tolist() == [0.75, 0.0]


class LinearScore(nn.Module):
    """f(x) = sum_i w_i x_i for a 1x4x4 image, as logits (N, 1)."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 1, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(weights.reshape(1, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("steps", [16, 4])
def test_deletion_and_insertion_curves_of_a_linear_model_have_their_closed_form(steps):
    weights = torch.arange(16, dtype=torch.float64)  # pixel i is worth i; the map ranks them by i
    model = LinearScore(weights).double()
    image = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    saliency_map = weights.reshape(1, 4, 4)
    per_step = 16 // steps
    # After deleting the k most salient pixels (15, 14, ...), the score is the sum of 0..15-k.
    removed = torch.arange(0, 17, per_step, dtype=torch.float64)
    deletion_scores = (15 - removed) * (16 - removed) / 2
    fractions = removed / 16
    expected_auc = ((deletion_scores[1:] + deletion_scores[:-1]) / 2 * fractions.diff()).sum()
    curve = deletion_curve(model, image, saliency_map, classes=0, steps=steps, score="logit")
    assert torch.allclose(curve.fractions, fractions.double())
    assert torch.allclose(curve.scores[0], deletion_scores)
    assert torch.allclose(curve.auc, expected_auc[None])
    assert torch.allclose(deletion_auc(model, image, saliency_map, classes=0, steps=steps, score="logit"),
                          expected_auc[None])
    inserted = insertion_curve(model, image, saliency_map, classes=0, steps=steps, score="logit")
    assert torch.allclose(inserted.scores[0], 120 - deletion_scores)  # 120 = 0 + 1 + ... + 15
    assert torch.allclose(inserted.auc, 120 - expected_auc[None])


def test_a_better_map_deletes_faster():
    model = LinearScore(torch.arange(16, dtype=torch.float64)).double()
    image = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    right = torch.arange(16.0).reshape(1, 4, 4)
    wrong = right.flip(-1).flip(-2)
    assert deletion_auc(model, image, right, classes=0, score="logit") < deletion_auc(
        model, image, wrong, classes=0, score="logit")
    with pytest.raises(CnnkitError, match="batch_size >= 1"):
        deletion_auc(model, image, right, classes=0, batch_size=0)


def test_spearman_equals_scipy_on_known_values_with_ties():
    # scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]).statistic (scipy's documented example)
    x = torch.tensor([[1.0, 2, 3, 4, 5]])
    y = torch.tensor([[5.0, 6, 7, 8, 7]])
    assert abs(spearman(x, y).item() - 0.8207826816681233) < 1e-12
    assert spearman(x, x ** 3).item() == pytest.approx(1.0)
    assert spearman(x, -x).item() == pytest.approx(-1.0)
    assert spearman(x, torch.ones_like(x)).item() == 0.0


def test_sanity_check_cascades_from_the_head_and_leaves_the_model_untouched():
    model = filled("compact_cnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = compact_input()
    assert parameter_layers(model)[:3] == ["classifier", "features.7.1", "features.7.0"]
    result = sanity_check(model, x, method="gradcam", layers=["classifier", "features.7", "features.6", "features"])
    assert result.layers == ("classifier", "features.7", "features.6", "features")
    assert result.correlation.shape == (4, 2)
    assert result.correlation[0].max() < 0.99  # Grad-CAM depends on the classifier's weights
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # EigenCAM ignores the class: randomising only the head leaves its map exactly as it was.
    eigen = sanity_check(model, x, method="eigencam", layers=["classifier"])
    assert torch.allclose(eigen.correlation, torch.ones(1, 2, dtype=torch.float64))
    with pytest.raises(CnnkitError, match="unknown layer"):
        sanity_check(model, x, layers=["head"])
    with pytest.raises(CnnkitError, match="no layer to randomise"):  # torch.stack([]) before
        sanity_check(model, x, layers=[])


def test_sanity_check_is_reproducible_from_its_generator():
    model = filled("compact_cnn")
    runs = [sanity_check(model, compact_input(), method="saliency", layers=["classifier", "features.7"],
                         generator=torch.Generator().manual_seed(3)).correlation for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
