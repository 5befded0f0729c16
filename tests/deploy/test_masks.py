"""Global magnitude masks: one threshold over all conv/linear weights, nested across rounds, density (1-rate)^n."""

from __future__ import annotations

import pytest
import torch

import cnnkit
from cnnkit.deploy.masks import apply_masks, density, global_magnitude_masks, prunable_weights, rounds_density
from cnnkit.errors import CnnkitError


def test_keeps_the_globally_largest_weights() -> None:
    model = cnnkit.create_model("mnist_cnn")
    masks = global_magnitude_masks(model, 0.3)
    weights = prunable_weights(model)
    assert list(masks) == list(weights) == ["features.0.0.weight", "features.2.0.weight", "features.4.0.weight",
                                            "classifier.0.weight", "classifier.3.weight"], "conv and linear weights"
    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    kept = torch.cat([masks[n].flatten() for n in weights])
    assert int(kept.sum()) == round(0.3 * magnitudes.numel())
    assert float(magnitudes[kept].min()) >= float(magnitudes[~kept].max()), "one global threshold"
    per_layer = [float(m.float().mean()) for m in masks.values()]
    assert max(per_layer) - min(per_layer) > 0.1, "global, not per-layer: layers end at different densities"


def test_rounds_nest_and_reach_rate_to_the_n() -> None:
    """Masks only lose entries, even when training reorders the magnitudes between rounds."""
    torch.manual_seed(0)
    model = cnnkit.create_model("compact_cnn")
    total = sum(w.numel() for w in prunable_weights(model).values())
    previous = None
    for n in range(1, 6):
        with torch.no_grad():  # "training": every weight moves, the ranking changes
            for w in prunable_weights(model).values():
                w.add_(0.05 * torch.randn_like(w))
        masks = global_magnitude_masks(model, rounds_density(0.2, n), previous=previous)
        assert density(masks) == pytest.approx(0.8**n, abs=1.0 / total)
        if previous is not None:
            assert all(not bool((masks[k] & ~previous[k]).any()) for k in masks), f"round {n} revived a weight"
        apply_masks(model, masks)
        previous = masks
    assert all(bool((w[~previous[n]] == 0).all()) for n, w in prunable_weights(model).items())


def test_bad_density_is_named() -> None:
    with pytest.raises(CnnkitError, match="sparsity must be in"):
        global_magnitude_masks(cnnkit.create_model("mnist_cnn"), 0.0)
