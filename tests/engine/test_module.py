"""Module mechanics: torch-like names, modes, gradients reset, state dicts in and out (incl. .npz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from oracle import assert_matches_torch
from torch import nn

from cnnkit import engine as E


def engine_model(seed: int = 0) -> E.Sequential:
    rng = np.random.default_rng(seed)
    return E.Sequential(
        E.Conv2d(1, 3, 3, rng=rng), E.BatchNorm2d(3), E.ReLU(), E.Dropout(0.5, rng=rng),
        E.Flatten(), E.Linear(12, 2, rng=rng),
    )  # fmt: skip


def torch_model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(12, 2))


def test_names_and_order_equal_torch() -> None:
    ours, theirs = engine_model(), torch_model()
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in theirs.named_parameters()]
    assert [name for name, _ in ours.named_buffers()] == [name for name, _ in theirs.named_buffers()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())


def test_torch_state_dict_loads_and_gives_torch_output() -> None:
    ours, theirs = engine_model(), torch_model()
    with torch.no_grad():
        theirs[1].running_mean.uniform_(-1, 1)
    theirs.eval()
    ours.load_state_dict({name: value.numpy() for name, value in theirs.state_dict().items()})
    ours.eval()
    x = np.random.default_rng(1).standard_normal((2, 1, 4, 4)).astype(np.float32)
    assert_matches_torch(ours(x), theirs(torch.from_numpy(x)))


def test_train_and_eval_reach_every_descendant() -> None:
    model = E.Sequential(E.Residual(E.Sequential(E.BatchNorm1d(2))), E.Concat([E.Identity()]))
    assert all(module.training for module in model.modules())
    assert model.eval() is model
    assert not any(module.training for module in model.modules())
    model.train()
    assert all(module.training for module in model.modules())


def test_zero_grad_and_containers() -> None:
    model = engine_model()
    for parameter in model.parameters():
        parameter.grad += 1.0
    model.zero_grad()
    assert all(np.all(parameter.grad == 0) for parameter in model.parameters())
    assert len(model) == 6 and isinstance(model[5], E.Linear) and isinstance(list(model)[0], E.Conv2d)
    with pytest.raises(TypeError, match="entry 1 is a int"):
        E.Sequential(E.ReLU(), 3)


def test_state_dict_round_trip_through_npz(tmp_path: Path) -> None:
    source, target = engine_model(seed=1), engine_model(seed=2)
    source[1].running_var[...] = 3.0
    path = tmp_path / "weights.npz"
    source.save(path)
    target.load(path)
    for (name, expected), actual in zip(source.state_dict().items(), target.state_dict().values()):
        np.testing.assert_array_equal(actual, expected, err_msg=name)
        assert actual.dtype == expected.dtype
    # The copy is deep: changing the source afterwards leaves the target alone.
    source[0].weight.value[...] = 0
    assert np.any(target[0].weight.value != 0)


def test_save_writes_exactly_the_given_path(tmp_path: Path) -> None:
    source, target = engine_model(seed=1), engine_model(seed=2)
    path = tmp_path / "weights"  # no .npz suffix: np.savez alone would write weights.npz
    source.save(path)
    target.load(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]
    np.testing.assert_array_equal(target[0].weight.value, source[0].weight.value)


def test_state_dict_returns_copies() -> None:
    model = engine_model()
    state = model.state_dict()
    state["0.weight"][...] = 7.0
    assert not np.any(model[0].weight.value == 7.0)


def test_load_state_dict_rejects_mismatches(tmp_path: Path) -> None:
    model = engine_model()
    state = model.state_dict()
    with pytest.raises(ValueError, match=r"missing keys \['5.bias'\]"):
        model.load_state_dict({name: value for name, value in state.items() if name != "5.bias"})
    with pytest.raises(ValueError, match=r"unexpected keys \['extra'\]"):
        model.load_state_dict({**state, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match="'5.weight': shape"):
        model.load_state_dict({**state, "5.weight": np.zeros((3, 12))})
    with pytest.raises(ValueError, match="no state file"):
        model.load(tmp_path / "absent.npz")


def test_load_names_the_file_for_every_kind_of_bad_state_file(tmp_path: Path) -> None:
    """Text, a truncated .npz, a single .npy array, foreign keys and wrong shapes: a ValueError naming the path."""
    model = engine_model()
    good = tmp_path / "good.npz"
    model.save(good)
    (tmp_path / "text.npz").write_text("not an archive")
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[:200])
    np.save(tmp_path / "single.npy", np.zeros(3))
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    np.savez(tmp_path / "shapes.npz", **{**model.state_dict(), "5.weight": np.zeros((3, 12), np.float32)})
    for name in ("text.npz", "truncated.npz", "single.npy", "foreign.npz", "shapes.npz"):
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            model.load(tmp_path / name)


def test_a_rejected_state_dict_changes_nothing() -> None:
    """Shapes are all checked before any entry is copied: a bad last entry leaves the model as it was."""
    model = engine_model(seed=1)
    before = model.state_dict()
    state = {name: np.full_like(value, 7) for name, value in before.items()}
    state["5.bias"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="'5.bias': shape"):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def _every_layer() -> list[E.Module]:
    """One instance of every engine layer class that has a backward (all of `cnnkit.engine` but
    Module and ModuleList, the containers included)."""
    rng = np.random.default_rng(0)
    return [
        E.Conv2d(1, 2, 3, rng=rng), E.Linear(4, 2, rng=rng), E.BatchNorm2d(2), E.BatchNorm1d(2),
        E.Dropout(0.5, rng=rng), E.Flatten(), E.ReLU(), E.LeakyReLU(), E.ReLU6(), E.GELU(), E.Sigmoid(),
        E.Tanh(), E.MaxPool2d(2), E.AvgPool2d(2), E.GlobalAvgPool2d(), E.Identity(),
        E.Residual(E.Identity()), E.Concat([E.Identity()]), E.Sequential(E.Identity()),
    ]  # fmt: skip


def test_every_layer_class_is_covered_by_the_backward_order_check() -> None:
    exported = {getattr(E, name) for name in E.__all__}
    layers = {cls for cls in exported if isinstance(cls, type) and issubclass(cls, E.Module)}
    assert layers - {E.Module, E.ModuleList, E.Activation} == {type(layer) for layer in _every_layer()}


@pytest.mark.parametrize("layer", _every_layer(), ids=lambda layer: type(layer).__name__)
def test_backward_before_forward_names_the_layer(layer: E.Module) -> None:
    """Was an AttributeError or a reshape error deep inside the op (or, for Identity, no error)."""
    name = type(layer).__name__
    with pytest.raises(RuntimeError, match=rf"^{name}\.backward called before forward: run forward\(x\) first"):
        layer.backward(np.zeros((2, 2, 2, 2), np.float32))
