"""Learning-rate schedules against torch.optim.lr_scheduler, step by step, and as the Trainer applies them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnkit.train.callbacks import Callback
from cnnkit.train.config import TrainConfig
from cnnkit.train.optim import lr_factor

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
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def before_batch(self, trainer) -> None:
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])


def test_the_trainer_steps_the_optimizer_through_torch_onecycle(tmp_path: Path) -> None:
    trainer = make_trainer(str(tmp_path), epochs=2, schedule="onecycle", warmup_epochs=0, ema_decay=None,
                           checkpoint_every_steps=None)
    recorder = RecordLr()
    trainer.callbacks.append(recorder)
    trainer.fit()
    total = 2 * trainer.steps_per_epoch
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=1.0, total_steps=total, cycle_momentum=False), total)
    assert recorder.lrs == pytest.approx([0.05 * e for e in expected], rel=1e-9)
