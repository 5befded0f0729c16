"""`build_optimizer` against torch.optim trajectories: same parameters, same batches, same steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError
from cnnkit.train.config import TrainConfig
from cnnkit.train.optim import build_optimizer, no_decay_parameter_names, parameter_groups

from train.toy_job import toy_data, toy_model


def _trajectory(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int = 5) -> list[torch.Tensor]:
    images, labels = toy_data(32).tensors
    torch.manual_seed(0)  # the same dropout masks in both runs
    out = []
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        out.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    return out


def _reference_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    skip = no_decay_parameter_names(model)
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if n not in skip], "weight_decay": weight_decay},
            {"params": [p for n, p in named if n in skip], "weight_decay": 0.0}]


@pytest.mark.parametrize("name, reference", [
    ("adam", lambda groups: torch.optim.Adam(groups, lr=0.01)),
    ("adamw", lambda groups: torch.optim.AdamW(groups, lr=0.01)),
    ("sgd", lambda groups: torch.optim.SGD(groups, lr=0.01, momentum=0.9, nesterov=True)),
])
def test_optimizer_follows_torch_trajectory(name: str, reference) -> None:
    config = TrainConfig(optimizer=name, lr=0.01, weight_decay=0.1)
    ours_model, ref_model = toy_model(seed=4), toy_model(seed=4)
    ours = _trajectory(ours_model, build_optimizer(parameter_groups(ours_model, 0.1), config))
    expected = _trajectory(ref_model, reference(_reference_groups(ref_model, 0.1)))
    for step, (a, b) in enumerate(zip(ours, expected)):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name}: step {step} differs")


def test_adam_couples_weight_decay_unlike_adamw() -> None:
    """Adam adds decay to the gradient (then rescales it), AdamW shrinks weights directly: with
    decay on, their trajectories part; Adam is what the soil recipe asks for."""
    runs = {}
    for name in ("adam", "adamw"):
        model = toy_model(seed=4)
        runs[name] = _trajectory(model, build_optimizer(parameter_groups(model, 0.1),
                                                        TrainConfig(optimizer=name, lr=0.01, weight_decay=0.1)))
    assert not torch.allclose(runs["adam"][-1], runs["adamw"][-1], atol=1e-6)
    assert isinstance(build_optimizer(parameter_groups(toy_model(), 0.0), TrainConfig(optimizer="adam")),
                      torch.optim.Adam)


def test_unknown_optimizer_is_an_error_listing_the_choices() -> None:
    with pytest.raises(CnnkitError, match="'sgd', 'adam', 'adamw'"):
        TrainConfig(optimizer="rmsprop")
