"""Engine optimizers against torch.optim: 10 steps from the same start on the same network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_twin import assert_same_state, copy_state_to_torch

from cnnkit import engine as E
from cnnkit.engine.losses import softmax_cross_entropy


class TorchGlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def twin_networks() -> tuple[E.Sequential, nn.Sequential]:
    # No conv bias before batch norm: its true gradient is 0, and Adam would amplify the rounding noise.
    rng = np.random.default_rng(0)
    ours = E.Sequential(
        E.Conv2d(2, 4, 3, padding=1, bias=False, rng=rng, dtype=np.float64), E.BatchNorm2d(4, dtype=np.float64), E.ReLU(),
        E.GlobalAvgPool2d(), E.Linear(4, 3, rng=rng, dtype=np.float64),
    )  # fmt: skip
    theirs = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), TorchGlobalAvgPool(), nn.Linear(4, 3))
    return ours, copy_state_to_torch(ours, theirs, np.float64)


OPTIMIZERS = {
    "sgd": (lambda p: E.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd-momentum-dampening": (
        lambda p: E.SGD(p, lr=0.05, momentum=0.9, dampening=0.1),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1),
    ),
    "sgd-nesterov-weight-decay": (
        lambda p: E.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
    ),
    "adam": (lambda p: E.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    "adam-l2-amsgrad": (
        lambda p: E.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True),
    ),
    "adamw": (lambda p: E.AdamW(p, lr=0.01), lambda p: torch.optim.AdamW(p, lr=0.01)),
    "adamw-amsgrad": (
        lambda p: E.AdamW(p, lr=0.02, weight_decay=0.5, amsgrad=True),
        lambda p: torch.optim.AdamW(p, lr=0.02, weight_decay=0.5, amsgrad=True),
    ),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_torch_over_ten_steps(name: str) -> None:
    make_ours, make_theirs = OPTIMIZERS[name]
    ours, theirs = twin_networks()
    optimizer, torch_optimizer = make_ours(ours.parameters()), make_theirs(theirs.parameters())
    rng = np.random.default_rng(1)
    for _ in range(10):
        x, targets = rng.standard_normal((8, 2, 5, 5)), rng.integers(0, 3, 8)
        optimizer.zero_grad()
        ours.backward(softmax_cross_entropy(ours(x), targets)[1])
        optimizer.step()
        torch_optimizer.zero_grad()
        F.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(targets)).backward()
        torch_optimizer.step()
    assert_same_state(ours, theirs)
    start, _ = twin_networks()
    assert not np.allclose(start.state_dict()["4.weight"], ours.state_dict()["4.weight"]), "parameters did not move"


def test_zero_grad_clears_gradients() -> None:
    ours, _ = twin_networks()
    optimizer = E.Adam(ours.parameters())
    ours.backward(softmax_cross_entropy(ours(np.ones((2, 2, 4, 4))), np.array([0, 1]))[1])
    assert any(np.any(p.grad != 0) for p in ours.parameters())
    optimizer.zero_grad()
    assert all(np.all(p.grad == 0) for p in ours.parameters())


def test_optimizers_reject_bad_settings() -> None:
    ours, _ = twin_networks()
    with pytest.raises(ValueError, match="Nesterov"):
        E.SGD(ours.parameters(), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        E.Adam([])
    with pytest.raises(ValueError, match="betas"):
        E.AdamW(ours.parameters(), betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="learning rate"):
        E.SGD(ours.parameters(), lr=-1.0)
