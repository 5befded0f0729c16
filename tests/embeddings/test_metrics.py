"""Retrieval metrics equal pytorch-metric-learning's AccuracyCalculator (fixture) and known
answers; verification metrics equal scikit-learn's AUC (fixture) and the Gaussian EER."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnkit.embeddings.metrics import retrieval_metrics
from cnnkit.embeddings.verification import roc_curve, verification_metrics
from cnnkit.errors import CnnkitError

FIXTURES = Path(__file__).parent / "fixtures"
PML_NAMES = {"precision_at_1": "precision_at_1", "r_precision": "r_precision",
             "map_at_r": "mean_average_precision_at_r", "mrr": "mean_reciprocal_rank"}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / "retrieval.npz"))


@pytest.mark.parametrize("mode", ["leave_one_out", "separate"])
@pytest.mark.parametrize("chunk_size", [1024, 7])
def test_retrieval_equals_pml_accuracy_calculator(data, mode: str, chunk_size: int) -> None:
    expected = json.loads((FIXTURES / "retrieval.json").read_text())[mode]
    extra = {} if mode == "leave_one_out" else {"reference": data["reference"],
                                                "reference_labels": data["reference_labels"]}
    # A small max_block forces query chunks of a few rows: the blockwise merge is exercised.
    got = retrieval_metrics(data["query"], data["query_labels"], **extra, chunk_size=chunk_size,
                            max_block=2000 if chunk_size == 7 else 16_000_000)
    for ours, theirs in PML_NAMES.items():
        assert got[ours] == pytest.approx(expected[theirs], abs=1e-6), ours


@pytest.mark.parametrize("chunk_size", [1024, 7])
def test_mrr_past_the_largest_r_equals_pml(data, chunk_size: int) -> None:
    """Unclustered points: many first relevant references rank past max R, where the second pass
    counts what is ahead (pml ranks all references, k=None)."""
    expected = json.loads((FIXTURES / "retrieval.json").read_text())["deep"]
    got = retrieval_metrics(data["deep_query"], data["deep_query_labels"], data["deep_reference"],
                            data["deep_reference_labels"], chunk_size=chunk_size,
                            max_block=2000 if chunk_size == 7 else 16_000_000)
    for ours, theirs in PML_NAMES.items():
        assert got[ours] == pytest.approx(expected[theirs], abs=1e-6), ours


def test_map_at_r_hand_case() -> None:
    """Relevance 1,0,1,1 in the first R = 4 (the fourth relevant item ranks 5th): MAP@R =
    (1/1 + 2/3 + 3/4) / 4 = 0.604167; R-precision 3/4; recall@1 1."""
    angles = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    reference = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    got = retrieval_metrics([[1.0, 0.0]], ["a"], reference, ["a", "b", "a", "a", "a"], k=(1, 2))
    assert got["map_at_r"] == pytest.approx(0.604167, abs=1e-6)
    assert got["r_precision"] == pytest.approx(0.75)
    assert got["precision_at_1"] == 1.0 and got["mrr"] == 1.0 and got["recall_at_2"] == 1.0


def test_mrr_beyond_the_top_list_and_lone_queries() -> None:
    """The only relevant reference ranks 4th, past the top-R list (R = 1): found by the second pass.
    A query whose label no reference has is left out (num_queries)."""
    angles = np.array([0.1, 0.2, 0.3, 0.4])
    reference = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    got = retrieval_metrics([[1.0, 0.0], [0.0, 1.0]], [1, 7], reference, [0, 0, 0, 1], k=(1,))
    assert got["mrr"] == pytest.approx(0.25) and got["precision_at_1"] == 0.0 and got["num_queries"] == 1


def test_retrieval_errors_name_the_argument() -> None:
    with pytest.raises(CnnkitError, match="query_labels"):
        retrieval_metrics(np.ones((3, 2)), [0, 1])
    with pytest.raises(CnnkitError, match="no query has a relevant"):
        retrieval_metrics(np.eye(3), [0, 1, 2])
    with pytest.raises(CnnkitError, match="k must be one or more"):
        retrieval_metrics(np.eye(3), [0, 0, 1], k=())
    with pytest.raises(CnnkitError, match="query has 3-d embeddings, reference 4-d"):
        retrieval_metrics(np.eye(3), [0, 0, 1], np.ones((2, 4)), [0, 1])
    with pytest.raises(CnnkitError, match=r"reference embeddings contain NaN .*row 1"):
        retrieval_metrics(np.eye(3), [0, 1, 1], [[1.0, 0.0, 0.0], [np.nan, 0.0, 1.0]], [0, 1])


def test_auc_and_roc_equal_sklearn_with_ties() -> None:
    ref = np.load(FIXTURES / "auc.npz")
    got = verification_metrics(ref["scores"], ref["same"])
    assert got["auc"] == pytest.approx(float(ref["auc"]), abs=1e-9)
    fpr, tpr, thresholds = roc_curve(ref["scores"], ref["same"])  # sklearn's drop_intermediate=False
    np.testing.assert_allclose(fpr, ref["fpr"], atol=1e-12)
    np.testing.assert_allclose(tpr, ref["tpr"], atol=1e-12)
    np.testing.assert_array_equal(thresholds, ref["thresholds"])


def test_eer_of_unit_gaussians_is_phi_minus_one() -> None:
    generator = torch.Generator().manual_seed(0)
    genuine = torch.randn(100_000, generator=generator, dtype=torch.float64) + 1
    impostor = torch.randn(100_000, generator=generator, dtype=torch.float64) - 1
    scores = torch.cat([genuine, impostor]).numpy()
    same = np.r_[np.ones(100_000, bool), np.zeros(100_000, bool)]
    got = verification_metrics(scores, same)
    phi_minus_one = 0.5 * (1 + math.erf(-1 / math.sqrt(2)))
    assert got["eer"] == pytest.approx(phi_minus_one, abs=0.005)
    assert abs(got["eer_threshold"]) < 0.05  # the two densities cross at 0
    # Best accuracy threshold is 0 too, accuracy 1 - Phi(-1); 10 folds agree.
    assert got["accuracy"] == pytest.approx(1 - phi_minus_one, abs=0.005)
    # TAR at FAR 1e-2: P(N(1,1) > z_0.99 - ... ) = 1 - Phi(2.326 - 2) = 1 - Phi(0.326) = 0.372.
    assert got["tar_at_far_0.01"] == pytest.approx(0.372, abs=0.01)
    assert got["tar_at_far_0.0001"] is not None and len(got["fpr"]) <= 1001


def test_verification_on_a_hand_case() -> None:
    got = verification_metrics([0.9, 0.8, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0], folds=2)
    assert got["auc"] == pytest.approx(8 / 9)
    assert got["tar_at_far_0.01"] is None  # 3 impostor pairs cannot measure a FAR of 1 %
    assert got["threshold"] == 0.8  # accepting >= 0.8: 5 of 6 right
    with pytest.raises(CnnkitError, match="both genuine"):
        verification_metrics([0.1, 0.2], [1, 1])
    for bad, name in [({"folds": 1}, "folds must be >= 2"), ({"fars": (-0.1,)}, "fars must lie in")]:
        with pytest.raises(CnnkitError, match=name):
            verification_metrics([0.9, 0.8, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0], **bad)
