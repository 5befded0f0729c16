"""A small CNN from engine modules (conv-BN-ReLU-pool, ResNet basic blocks via Residual, a dense
Concat block, linear) against the same network in torch: output, loss, all gradients, running stats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from oracle import assert_matches_torch
from torch import nn
from torch_twin import assert_same_gradients, assert_same_state, copy_state_to_torch

from cnnkit import engine as E
from cnnkit.engine.losses import softmax_cross_entropy


class TorchResidual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class TorchConcat(nn.Module):
    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class TorchGlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def engine_network(dtype: type, rng: np.random.Generator) -> E.Sequential:
    def conv(c_in: int, c_out: int, k: int, stride: int = 1) -> E.Conv2d:
        return E.Conv2d(c_in, c_out, k, stride, k // 2, bias=False, rng=rng, dtype=dtype)

    def basic_block(c_in: int, c_out: int, stride: int) -> E.Sequential:
        body = E.Sequential(conv(c_in, c_out, 3, stride), E.BatchNorm2d(c_out, dtype=dtype), E.ReLU(),
                            conv(c_out, c_out, 3), E.BatchNorm2d(c_out, dtype=dtype))
        shortcut = None if stride == 1 else E.Sequential(conv(c_in, c_out, 1, stride), E.BatchNorm2d(c_out, dtype=dtype))
        return E.Sequential(E.Residual(body, shortcut), E.ReLU())

    def dense_layer(c_in: int, growth: int) -> E.Concat:
        body = E.Sequential(E.BatchNorm2d(c_in, dtype=dtype), E.ReLU(), conv(c_in, growth, 3))
        return E.Concat([E.Identity(), body])

    return E.Sequential(
        E.Conv2d(3, 8, 3, padding=1, rng=rng, dtype=dtype), E.BatchNorm2d(8, dtype=dtype), E.ReLU(), E.MaxPool2d(2),
        basic_block(8, 8, 1),
        basic_block(8, 12, 2),
        dense_layer(12, 4),
        dense_layer(16, 4),
        E.GlobalAvgPool2d(),
        E.Linear(20, 5, rng=rng, dtype=dtype),
    )  # fmt: skip


def torch_network() -> nn.Sequential:
    def conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
        return nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False)

    def basic_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
        body = nn.Sequential(conv(c_in, c_out, 3, stride), nn.BatchNorm2d(c_out), nn.ReLU(), conv(c_out, c_out, 3), nn.BatchNorm2d(c_out))
        shortcut = None if stride == 1 else nn.Sequential(conv(c_in, c_out, 1, stride), nn.BatchNorm2d(c_out))
        return nn.Sequential(TorchResidual(body, shortcut), nn.ReLU())

    def dense_layer(c_in: int, growth: int) -> TorchConcat:
        return TorchConcat([nn.Identity(), nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), conv(c_in, growth, 3))])

    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        basic_block(8, 8, 1), basic_block(8, 12, 2), dense_layer(12, 4), dense_layer(16, 4),
        TorchGlobalAvgPool(), nn.Linear(20, 5),
    )  # fmt: skip


def twin_networks(dtype: type) -> tuple[E.Sequential, nn.Module]:
    ours = engine_network(dtype, np.random.default_rng(0))
    return ours, copy_state_to_torch(ours, torch_network(), dtype)


def batch(dtype: type, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((6, 3, 12, 12)).astype(dtype), rng.integers(0, 5, 6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_network_matches_torch(dtype: type, training: bool) -> None:
    ours, theirs = twin_networks(dtype)
    ours.train(training)
    theirs.train(training)
    x, targets = batch(dtype, seed=1)
    logits = ours(x)
    x_torch = torch.from_numpy(x.copy()).requires_grad_(True)
    logits_torch = theirs(x_torch)
    assert_matches_torch(logits, logits_torch, name="logits")
    loss, dlogits = softmax_cross_entropy(logits, targets)
    loss_torch = F.cross_entropy(logits_torch, torch.from_numpy(targets))
    assert_matches_torch(np.array(loss, dtype=dtype), loss_torch, name="loss")
    loss_torch.backward()
    assert_matches_torch(ours.backward(dlogits), x_torch.grad, name="input gradient")
    assert_same_gradients(ours, theirs)


def test_running_stats_match_torch_after_training_steps() -> None:
    ours, theirs = twin_networks(np.float64)
    optimizer, torch_optimizer = E.SGD(ours.parameters(), lr=0.1), torch.optim.SGD(theirs.parameters(), lr=0.1)
    for step in range(4):
        x, targets = batch(np.float64, seed=10 + step)
        optimizer.zero_grad()
        ours.backward(softmax_cross_entropy(ours(x), targets)[1])
        optimizer.step()
        torch_optimizer.zero_grad()
        F.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(targets)).backward()
        torch_optimizer.step()
    assert_same_state(ours, theirs)
    assert int(ours.state_dict()["1.num_batches_tracked"]) == 4


def test_residual_identity_gradient_flows_to_both_paths() -> None:
    rng = np.random.default_rng(2)
    body = E.Linear(3, 3, rng=rng, dtype=np.float64)
    block = E.Residual(body)
    theirs = copy_state_to_torch(block, TorchResidual(nn.Linear(3, 3)), np.float64)
    x = rng.standard_normal((4, 3))
    x_torch = torch.from_numpy(x).requires_grad_(True)
    assert_matches_torch(block(x), theirs(x_torch))
    dy = rng.standard_normal((4, 3))
    theirs(x_torch).backward(torch.from_numpy(dy))
    # dx = dy (identity path) + dy W (body path).
    assert_matches_torch(block.backward(dy), x_torch.grad)
    assert_same_gradients(block, theirs)
    assert_same_state(block, theirs)


def test_residual_rejects_mismatched_paths() -> None:
    block = E.Residual(E.Linear(3, 2, rng=np.random.default_rng(0)))
    with pytest.raises(ValueError, match="Residual: body output"):
        block(np.zeros((1, 3), np.float32))


def test_concat_splits_gradient_by_branch_channels() -> None:
    rng = np.random.default_rng(3)
    ours = E.Concat([E.Identity(), E.Conv2d(2, 3, 1, rng=rng, dtype=np.float64), E.Conv2d(2, 1, 3, padding=1, rng=rng, dtype=np.float64)])
    theirs = copy_state_to_torch(ours, TorchConcat([nn.Identity(), nn.Conv2d(2, 3, 1), nn.Conv2d(2, 1, 3, padding=1)]), np.float64)
    x = rng.standard_normal((2, 2, 4, 4))
    x_torch = torch.from_numpy(x).requires_grad_(True)
    y = ours(x)
    assert y.shape == (2, 6, 4, 4)
    y_torch = theirs(x_torch)
    assert_matches_torch(y, y_torch)
    dy = rng.standard_normal(y.shape)
    y_torch.backward(torch.from_numpy(dy))
    assert_matches_torch(ours.backward(dy), x_torch.grad)
    assert_same_gradients(ours, theirs)
