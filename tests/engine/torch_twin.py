"""Run an engine module and its torch twin on the same input and compare everything.

The twin has the same parameter/buffer names, so the engine's state dict loads into it
unchanged; then outputs, input gradients and parameter gradients are compared with
`assert_matches_torch`.
"""

from __future__ import annotations

import numpy as np
import torch
from oracle import assert_matches_torch
from torch import nn

from cnnkit.engine import Module

TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def copy_state_to_torch(ours: Module, theirs: nn.Module, dtype: np.dtype) -> nn.Module:
    """Give `theirs` our dtype and our parameters and buffers (strict: the names must agree)."""
    theirs.to(TORCH_DTYPE[np.dtype(dtype)])
    theirs.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in ours.state_dict().items()})
    return theirs


def assert_same_state(ours: Module, theirs: nn.Module) -> None:
    """Parameters and buffers (e.g. running statistics) agree entry by entry."""
    reference = theirs.state_dict()
    assert list(ours.state_dict()) == list(reference), "state dict keys or order differ from torch's"
    for name, value in ours.state_dict().items():
        if np.issubdtype(value.dtype, np.integer):  # counters such as num_batches_tracked
            assert int(value) == int(reference[name]), f"{name}: {int(value)} != torch's {int(reference[name])}"
        else:
            assert_matches_torch(value, reference[name], name=name)


def assert_forward_backward_match(
    ours: Module, theirs: nn.Module, x: np.ndarray, *, rng: np.random.Generator
) -> None:
    """Same output, input gradient and parameter gradients for a random upstream gradient dy."""
    ours.zero_grad()
    y = ours(x)
    x_torch = torch.from_numpy(x.copy()).requires_grad_(True)
    y_torch = theirs(x_torch)
    assert_matches_torch(y, y_torch, name="output")
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    y_torch.backward(torch.from_numpy(dy))
    assert_matches_torch(ours.backward(dy), x_torch.grad, name="input gradient")
    assert_same_gradients(ours, theirs)


def assert_same_gradients(ours: Module, theirs: nn.Module) -> None:
    """Every parameter's gradient equals torch's `.grad` under the same name."""
    reference = dict(theirs.named_parameters())
    ours_named = dict(ours.named_parameters())
    assert list(ours_named) == list(reference), "parameter names or order differ from torch's"
    for name, parameter in ours_named.items():
        assert reference[name].grad is not None, f"torch computed no gradient for {name}"
        assert_matches_torch(parameter.grad, reference[name].grad, name=f"{name}.grad")
