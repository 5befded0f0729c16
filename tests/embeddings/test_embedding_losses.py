"""Each loss equals pytorch-metric-learning 2.9.0's on the same batch and weights (fixture), value
and gradient; the P x K sampler gives P classes x K items per batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cnnkit.embeddings.losses import TripletLoss, make_loss
from cnnkit.embeddings.sampler import pk_batches, pk_epoch_order
from cnnkit.errors import CnnkitError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / "losses.npz"))


@pytest.mark.parametrize("name", ["arcface", "cosface", "normsoftmax"])
def test_proxy_losses_equal_pml(ref, name: str) -> None:
    weight = torch.tensor(ref["W"]).T.contiguous()  # pml's (D, K) -> ours (K, D)
    loss_fn = make_loss(name, weight.shape[0], weight.shape[1]).double()
    loss_fn.weight.data = weight
    embeddings = torch.tensor(ref["embeddings"], requires_grad=True)
    value = loss_fn(embeddings, torch.tensor(ref["labels"]))
    value.backward()
    assert float(value.detach()) == pytest.approx(float(ref[f"{name}_loss"]), abs=1e-5)
    np.testing.assert_allclose(embeddings.grad.numpy(), ref[f"{name}_grad"], atol=1e-5)


@pytest.mark.parametrize("batch", ["triplet", "lone"])  # lone: item 0 alone in its class, never an anchor
@pytest.mark.parametrize("mining", ["batch_hard", "semihard"])
def test_triplet_losses_equal_pml(ref, mining: str, batch: str) -> None:
    embeddings = torch.tensor(ref["embeddings"], requires_grad=True)
    value = TripletLoss(margin=0.2, mining=mining)(embeddings, torch.tensor(ref[f"{batch}_labels"]))
    value.backward()
    assert float(value.detach()) == pytest.approx(float(ref[f"{batch}_{mining}_loss"]), abs=1e-5)
    np.testing.assert_allclose(embeddings.grad.numpy(), ref[f"{batch}_{mining}_grad"], atol=1e-5)


def test_arcface_margin_lowers_only_the_target_logit() -> None:
    loss_fn = make_loss("arcface", 3, 2, scale=1.0, margin=0.5)
    loss_fn.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    cosines = loss_fn.cosines(torch.tensor([[1.0, 1.0]]))
    logits = loss_fn.logits_from_cosines(cosines, torch.tensor([0]))
    # theta = 45 deg to class 0: cos(pi/4 + 0.5); the others keep their cosines.
    torch.testing.assert_close(logits, torch.tensor([[np.cos(np.pi / 4 + 0.5), np.cos(np.pi / 4), -np.cos(np.pi / 4)]],
                                                    dtype=torch.float32))


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_arcface_gradient_is_finite_on_and_opposite_its_proxy(direction: float) -> None:
    """cos theta = 1 (the goal of training) and -1: acos's gradient is infinite there, ours is not."""
    loss_fn = make_loss("arcface", 2, 2, scale=64.0, margin=0.5)
    loss_fn.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    embeddings = torch.tensor([[direction * 3.0, 0.0]], requires_grad=True)
    value = loss_fn(embeddings, torch.tensor([0]))
    value.backward()
    assert torch.isfinite(embeddings.grad).all() and torch.isfinite(loss_fn.weight.grad).all()
    target = np.cos(0.5) if direction > 0 else -1.0 - 0.5 * np.sin(0.5)  # cos(0 + m); the pi - m branch
    logits = torch.tensor([[target, 0.0]]) * 64.0
    assert float(value.detach()) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.tensor([0]))),
                                                  rel=1e-5)


def test_triplet_with_nothing_mined_is_zero_and_backpropagates() -> None:
    embeddings = torch.randn(4, 3, requires_grad=True)
    value = TripletLoss(mining="batch_hard")(embeddings, torch.tensor([0, 1, 2, 3]))  # no positives
    value.backward()
    assert float(value.detach()) == 0.0 and embeddings.grad is not None


def test_unknown_loss_and_bad_mining_are_named() -> None:
    with pytest.raises(CnnkitError, match="unknown loss 'center'"):
        make_loss("center", 3, 4)
    with pytest.raises(CnnkitError, match="mining"):
        TripletLoss(mining="hard")
    with pytest.raises(CnnkitError, match="--margin does not apply to normsoftmax"):
        make_loss("normsoftmax", 3, 4, margin=0.3)
    with pytest.raises(CnnkitError, match="--scale does not apply to triplet"):
        make_loss("triplet", 3, 4, scale=30.0)
    with pytest.raises(CnnkitError, match="--mining applies to the triplet loss only"):
        make_loss("arcface", 3, 4, mining="semihard")
    with pytest.raises(CnnkitError, match="--scale must be > 0"):
        make_loss("arcface", 3, 4, scale=0.0)  # was taken as "the default 64"
    assert make_loss("triplet", 3, 4, mining="semihard").mining == "semihard"


def test_pk_batches_hold_p_classes_of_k() -> None:
    labels = [i % 7 for i in range(70)] + [7]  # class 7 has a single item: drawn with replacement
    batches = pk_batches(labels, 4, 3, generator=torch.Generator().manual_seed(0))
    assert len(batches) == 71 // 12
    for batch in batches:
        classes = [labels[i] for i in batch]
        assert len(set(classes)) == 4 and all(classes.count(c) == 3 for c in set(classes))
    order = pk_epoch_order(labels, 4, 3)(torch.Generator().manual_seed(1))
    assert len(order) == len(labels) and set(order[:12]) and len({labels[i] for i in order[:12]}) == 4
    with pytest.raises(CnnkitError, match="only 8"):
        pk_batches(labels, 9, 2, generator=torch.Generator())


def test_pk_order_makes_every_training_batch_p_by_k() -> None:
    from torch.utils.data import TensorDataset

    from cnnkit.data.loader import make_loader

    labels = torch.arange(60) % 5
    dataset = TensorDataset(torch.zeros(60, 1, 2, 2, dtype=torch.uint8), labels)
    for rank, world_size in [(0, 1), (0, 2), (1, 2), (2, 3)]:  # under DDP each rank's share, too
        order = pk_epoch_order(labels.tolist(), 3, 2, world_size=world_size)
        loader = make_loader(dataset, batch_size=6, train=True, seed=3, rank=rank, world_size=world_size,
                             epoch_order=order)
        for epoch in range(2):
            loader.set_epoch(epoch)
            assert len(loader) == 10 // world_size
            for _, batch_labels in loader:
                counts = torch.bincount(batch_labels, minlength=5)
                assert sorted(counts.tolist()) == [0, 0, 2, 2, 2], (rank, world_size)
