"""Checkpoints survive a kill, and a resumed run ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnkit.data.loader import device_stage
from cnnkit.data.mix import CutMix, MixUp
from cnnkit.train import checkpoint as ckpt
from cnnkit.train.callbacks import Callback, CsvLogger
from cnnkit.train.trainer import TrainingDiverged

from train.toy_job import StopAfter, make_trainer, toy_data

TOY_JOB = Path(__file__).with_name("toy_job.py")


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(run_dir / "last.pt")["model"]


def _assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"


def _assert_same_optimizer_state(a: dict, b: dict) -> None:
    """Param groups (LR, momentum / betas) equal; every state tensor (momentum buffers, Adam moments) bit-identical."""
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for index in a["state"]:
        _assert_bit_identical(a["state"][index], b["state"][index])


@pytest.mark.parametrize("setting", ["shuffled", "balanced_10_90", "mixed_bf16_adamw", "onecycle_sgd",
                                     "onecycle_adamw", "accumulate_4", "accumulate_2_mixed_bf16_adamw"])
def test_in_process_resume_mid_epoch_is_bit_identical(tmp_path: Path, setting: str) -> None:
    options: dict = {}
    stop_after = 8  # 6 batches per epoch, a step each: mid second epoch
    if setting == "balanced_10_90":  # class-balanced draws with replacement and a class-weighted loss
        options = {"train_data": toy_data(class0_every=10), "balanced_sampling": True, "class_weighted_loss": True}
    if "mixed_bf16_adamw" in setting:  # MixUp or CutMix per batch, label smoothing, clipping, bf16, AdamW
        options = {"batch_transform": device_stage(None, [MixUp(2, alpha=0.4), CutMix(2, alpha=1.0)]),
                   "label_smoothing": 0.1, "grad_clip_norm": 1.0, "precision": "bf16", "optimizer": "adamw"}
    if setting.startswith("onecycle"):  # momentum / beta1 cycled per step, a kill mid-cycle
        options = {"schedule": "onecycle", "warmup_epochs": 0, "optimizer": setting.split("_")[1]}
    if setting.startswith("accumulate"):  # optimizer steps of 4 + 2 micro-batches per epoch (or 3 of 2)
        options["accumulate_steps"] = int(setting.split("_")[1])
        stop_after = 3 if options["accumulate_steps"] == 4 else 8  # mid second / third epoch
    make_trainer(str(tmp_path / "full"), epochs=3, **options).fit()
    interrupted = make_trainer(str(tmp_path / "cut"), epochs=3, **options)
    interrupted.callbacks.append(StopAfter(steps=stop_after))
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert 0 < ckpt.load_checkpoint(tmp_path / "cut" / "last.pt")["trainer"]["batch_in_epoch"] < 6, "mid-epoch"
    make_trainer(str(tmp_path / "cut"), epochs=3, **options).fit(resume_from=tmp_path / "cut" / "last.pt")
    _assert_bit_identical(_final_weights(tmp_path / "full"), _final_weights(tmp_path / "cut"))
    full_ckpt = ckpt.load_checkpoint(tmp_path / "full" / "last.pt")
    cut_ckpt = ckpt.load_checkpoint(tmp_path / "cut" / "last.pt")
    _assert_bit_identical(full_ckpt["ema"], cut_ckpt["ema"])
    assert full_ckpt["trainer"]["history"] == cut_ckpt["trainer"]["history"]
    _assert_same_optimizer_state(full_ckpt["optimizer"], cut_ckpt["optimizer"])


def _run_job(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(TOY_JOB), str(run_dir), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# Seconds after the first checkpoint: different points of the run. Accumulating (steps of 4 + 2
# micro-batches), 4 in 6 of the pauses before a forward pass are inside a step.
@pytest.mark.parametrize("accumulate, kill_points", [("1", (0.3, 1.1)), ("4", (0.6,))])
def test_sigkill_at_any_moment_then_resume_is_bit_identical(tmp_path: Path, accumulate: str,
                                                            kill_points: tuple[float, ...]) -> None:
    """A kill between the micro-batches of a step too: checkpoints are written at step boundaries only."""
    reference = _run_job(tmp_path / "reference", "--accumulate-steps", accumulate)
    assert reference.wait(timeout=120) == 0, reference.stderr.read().decode()
    for kill_after in kill_points:
        run_dir = tmp_path / f"killed_{kill_after}"
        job = _run_job(run_dir, "--pause", "0.02", "--accumulate-steps", accumulate)
        deadline = time.monotonic() + 60
        while not (run_dir / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(kill_after)
        os.kill(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
        assert job.returncode == -signal.SIGKILL, "the job finished before it could be killed"
        resumed = _run_job(run_dir, "--resume", "--accumulate-steps", accumulate)
        assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()
        _assert_bit_identical(_final_weights(tmp_path / "reference"), _final_weights(run_dir))
        _assert_bit_identical(load_file(tmp_path / "reference" / "best.safetensors"),
                              load_file(run_dir / "best.safetensors"))


def test_interrupted_checkpoint_write_keeps_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint({"step": torch.tensor(1)}, path)

    def crash_midway(obj, handle, *args, **kwargs):
        handle.write(b"partial bytes of a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint({"step": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert int(ckpt.load_checkpoint(path)["step"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "temporary file left behind"


def test_interrupted_config_write_keeps_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.yaml is rewritten by every resume and checked by the next: it is written atomically too."""
    from cnnkit.train.config import TrainConfig, load_config, save_config

    path = tmp_path / "config.yaml"
    save_config(TrainConfig(epochs=3), path)

    def fail(_descriptor: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        save_config(TrainConfig(epochs=5), path)
    monkeypatch.undo()
    assert load_config(path).epochs == 3
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"], "temporary file left behind"


def test_interrupted_metrics_csv_rewrite_keeps_the_earlier_rows(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """metrics.csv is rewritten whole after each epoch: a kill then lost every earlier row."""
    trainer = make_trainer(str(tmp_path), epochs=2, checkpoint_every_steps=None)
    trainer.callbacks.append(CsvLogger(tmp_path / "metrics.csv"))

    def fail(_descriptor: int) -> None:
        raise OSError("disk full")

    class FailSecondWrite(Callback):
        def after_epoch(self, t) -> None:
            if t.state.epoch == 1:
                monkeypatch.setattr(os, "fsync", fail)

    trainer.callbacks.insert(0, FailSecondWrite())
    with pytest.raises(OSError, match="disk full"):
        trainer.fit()
    monkeypatch.undo()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("0,"), rows


class PoisonAfter(Callback):
    """Makes the model output NaN from optimizer step `step` on."""

    def __init__(self, step: int) -> None:
        self.step = step

    def before_batch(self, trainer) -> None:
        if trainer.state.step == self.step:
            with torch.no_grad():
                trainer.model[-1].bias.fill_(float("nan"))


def test_nan_loss_stops_with_step_and_lr_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = make_trainer(str(tmp_path), epochs=3)
    trainer.config = trainer.config.replace(checkpoint_every_steps=None)
    trainer.callbacks.append(PoisonAfter(step=8))
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 8 \(epoch 2, batch 3\), learning rate"):
        trainer.fit()
    saved = ckpt.load_checkpoint(tmp_path / "last.pt")
    assert saved["trainer"]["epoch"] == 1 and saved["trainer"]["step"] == 6
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


class OverflowGradientAt(Callback):
    """A finite loss whose gradient overflows at optimizer step `step`: the step leaves Inf/NaN weights."""

    def __init__(self, step: int) -> None:
        self.step, self.hook = step, None

    def before_batch(self, trainer) -> None:
        if trainer.state.step == self.step:
            self.hook = trainer.model[-1].weight.register_hook(lambda grad: grad * float("inf"))

    def after_batch(self, trainer) -> None:
        if self.hook is not None:
            self.hook.remove()
            self.hook = None


def test_non_finite_weights_from_a_finite_loss_never_replace_the_last_good_checkpoint(tmp_path: Path) -> None:
    """They were checkpointed (last.pt held Inf/NaN weights) before the next step's NaN loss stopped the run."""
    trainer = make_trainer(str(tmp_path), epochs=3)  # a checkpoint after every step
    trainer.callbacks.append(OverflowGradientAt(step=8))
    with pytest.raises(TrainingDiverged, match=r"weights are not finite after step 9 \(epoch 2\), learning rate"):
        trainer.fit()
    saved = ckpt.load_checkpoint(tmp_path / "last.pt")
    assert saved["trainer"]["step"] == 8
    assert all(torch.isfinite(v).all() for v in [*saved["model"].values(), *saved["ema"].values()]
               if v.is_floating_point())


def test_nan_policy_skip_skips_the_batch(tmp_path: Path) -> None:
    trainer = make_trainer(str(tmp_path), epochs=1)
    trainer.config = trainer.config.replace(nan_policy="skip")
    poisoned = {"count": 0}

    class PoisonOnce(Callback):
        def before_batch(self, t) -> None:
            if t.state.step == 2:
                t.forward_model = _NanOnce(t.forward_model, poisoned)

    trainer.callbacks.append(PoisonOnce())
    trainer.fit()
    assert trainer.state.skipped_batches == 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


class _NanOnce(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, counter: dict) -> None:
        super().__init__()
        self.inner, self.counter = inner, counter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.counter["count"] == 0:
            self.counter["count"] += 1
            return out * float("nan")
        return out


def test_resume_from_a_checkpoint_of_another_model_names_the_file(tmp_path: Path) -> None:
    from torch import nn
    from torch.utils.data import TensorDataset

    from cnnkit.errors import CnnkitError
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    make_trainer(str(tmp_path / "toy"), epochs=1).fit()
    other = Trainer(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), TensorDataset(torch.zeros(16, 1, 8, 8),
                    torch.zeros(16, dtype=torch.long)), TrainConfig(batch_size=8), num_classes=2, run_dir=tmp_path)
    with pytest.raises(CnnkitError, match=r"cannot resume from .*toy/last.pt"):
        other.fit(resume_from=tmp_path / "toy" / "last.pt")
