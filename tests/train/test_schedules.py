"""Learning-rate schedules against torch.optim.lr_scheduler, step by step, and as the Trainer applies them."""

from __future__ import annotations

from pathlib import Path

import logging

import pytest
import torch

from cnnkit.train.callbacks import Callback
from cnnkit.train.config import TrainConfig
from cnnkit.train.optim import lr_factor, onecycle_momentum

from train.toy_job import make_trainer


def _torch_lrs(make_scheduler, steps: int, *, per_epoch: int = 1) -> list[float]:
    """The LR torch uses at each optimizer step (`per_epoch`: scheduler.step() once every that many steps)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.9)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for step in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if (step + 1) % per_epoch == 0:
            scheduler.step()
    return lrs


@pytest.mark.parametrize("total_steps", [7, 20, 101])
def test_onecycle_equals_torch_onecycle_lr(total_steps: int) -> None:
    config = TrainConfig(schedule="onecycle", lr=1.0)
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=1.0, total_steps=total_steps, cycle_momentum=False), total_steps)
    ours = [lr_factor(config, step, total_steps, steps_per_epoch=5) for step in range(total_steps)]
    assert ours == pytest.approx(expected, rel=1e-12, abs=1e-15)


def _momentum_of(group: dict) -> float:
    """SGD's momentum or Adam(W)'s beta1."""
    return group["betas"][0] if "betas" in group else group["momentum"]


def _torch_onecycle(optimizer_name: str, steps: int) -> tuple[list[float], list[float]]:
    """LR and momentum (SGD) / beta1 (AdamW) at each step under torch's OneCycleLR with its defaults."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = (torch.optim.SGD([param], lr=1.0, momentum=0.9, nesterov=True) if optimizer_name == "sgd"
                 else torch.optim.AdamW([param], lr=1.0))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=steps)
    lrs, momenta = [], []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append(_momentum_of(optimizer.param_groups[0]))
        optimizer.step()
        scheduler.step()
    return lrs, momenta


@pytest.mark.parametrize("optimizer_name", ["sgd", "adamw"])
@pytest.mark.parametrize("total_steps", [7, 20, 101])
def test_onecycle_cycles_momentum_as_torch_onecycle_lr(optimizer_name: str, total_steps: int) -> None:
    config = TrainConfig(schedule="onecycle", lr=1.0, optimizer=optimizer_name)
    lrs, momenta = _torch_onecycle(optimizer_name, total_steps)
    assert momenta[0] == 0.95 and min(momenta) == pytest.approx(0.85, abs=5e-3)
    ours = [onecycle_momentum(config, step, total_steps) for step in range(total_steps)]
    assert ours == pytest.approx(momenta, rel=1e-12, abs=1e-15)
    assert [lr_factor(config, s, total_steps, 5) for s in range(total_steps)] == pytest.approx(lrs, rel=1e-12,
                                                                                                abs=1e-15)


def test_momentum_is_cycled_only_by_onecycle_and_not_for_plain_sgd() -> None:
    assert onecycle_momentum(TrainConfig(schedule="cosine", optimizer="sgd"), 3, 10) is None
    plain = TrainConfig(schedule="onecycle", optimizer="sgd", momentum=0.0, nesterov=False)
    assert onecycle_momentum(plain, 3, 10) is None


def test_cosine_without_warmup_equals_cosine_annealing_lr() -> None:
    config = TrainConfig(schedule="cosine", lr=1.0)
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=24), 24)
    assert [lr_factor(config, s, 24, 6) for s in range(24)] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cosine_after_warmup_is_cosine_annealing_over_the_remaining_steps() -> None:
    config = TrainConfig(schedule="cosine", lr=1.0, warmup_epochs=1)
    ours = [lr_factor(config, s, 24, 6) for s in range(24)]
    assert ours[:6] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=18), 18)
    assert ours[6:] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_step_schedule_equals_step_lr_stepped_per_epoch() -> None:
    config = TrainConfig(schedule="step", lr=1.0, step_size_epochs=2, step_gamma=0.3)
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.3), 30, per_epoch=5)
    assert [lr_factor(config, s, 30, 5) for s in range(30)] == pytest.approx(expected, rel=1e-12)


class RecordLr(Callback):
    """The LR and the momentum / beta1 of every parameter group, as the optimizer step will use them."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.momenta: list[float] = []

    def before_batch(self, trainer) -> None:
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])
        momenta = {_momentum_of(group) for group in trainer.optimizer.param_groups}
        assert len(momenta) == 1
        self.momenta.append(momenta.pop())


@pytest.mark.parametrize("optimizer_name", ["sgd", "adamw"])
def test_the_trainer_steps_the_optimizer_through_torch_onecycle(tmp_path: Path, optimizer_name: str) -> None:
    trainer = make_trainer(str(tmp_path), epochs=2, schedule="onecycle", warmup_epochs=0, ema_decay=None,
                           checkpoint_every_steps=None, optimizer=optimizer_name)
    recorder = RecordLr()
    trainer.callbacks.append(recorder)
    trainer.fit()
    lrs, momenta = _torch_onecycle(optimizer_name, 2 * trainer.steps_per_epoch)
    assert recorder.lrs == pytest.approx([0.05 * e for e in lrs], rel=1e-9)
    assert recorder.momenta == pytest.approx(momenta, rel=1e-12)


def test_onecycle_with_plain_sgd_keeps_momentum_zero_and_says_so(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cnnkit")
    trainer = make_trainer(str(tmp_path), epochs=1, schedule="onecycle", warmup_epochs=0, ema_decay=None,
                           checkpoint_every_steps=None, momentum=0.0, nesterov=False)
    recorder = RecordLr()
    trainer.callbacks.append(recorder)
    trainer.fit()
    assert recorder.momenta == [0.0] * trainer.steps_per_epoch
    assert "SGD without momentum (momentum 0), so the momentum is not cycled" in caplog.text
