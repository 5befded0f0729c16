"""The run directory of `fit`, metrics, the LR finder, and the YAML config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from cnnkit.errors import CnnkitError
from cnnkit.train.config import TrainConfig, load_config
from cnnkit.models.base import DefaultCfg
from cnnkit.train.fit import DataBundle, RunInfo, fit
from cnnkit.train.lr_find import loss_fell, lr_find, suggest_lr
from cnnkit.train.metrics import ClassificationMeter
from cnnkit.train.trainer import Trainer

from train.toy_job import toy_data, toy_model

CONFIG = TrainConfig(epochs=3, batch_size=16, lr=0.05, optimizer="sgd", seed=0, weight_decay=1e-4)
INFO = RunInfo(model_name="toy", class_names=["left", "right"], default_cfg=DefaultCfg(input_size=(1, 8, 8), mean=(0.5,), std=(0.5,)))


def test_fit_writes_the_documented_run_directory(tmp_path: Path) -> None:
    data = DataBundle(train=toy_data(), val=toy_data(32, seed=1), test=toy_data(32, seed=2))
    summary = fit(toy_model(), data, CONFIG, INFO, run_dir=tmp_path, quiet=True)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.yaml", "metrics.csv", "best.safetensors", "last.pt", "tensorboard", "summary.json"} <= names
    assert any((tmp_path / "tensorboard").iterdir()), "no TensorBoard event file"
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert {"train_loss", "train_top1", "val_loss", "val_top1", "lr"} <= rows[0].keys()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["class_names"] == ["left", "right"] and on_disk["model_name"] == "toy"
    assert on_disk["test"]["test_top1"] > 0.9, "the toy task is easy"
    assert load_config(tmp_path / "config.yaml") == CONFIG
    model = toy_model()
    model.load_state_dict(load_file(tmp_path / "best.safetensors"))
    assert summary.best_epoch in (0, 1, 2)


def test_fit_refuses_to_overwrite_or_resume_nothing(tmp_path: Path) -> None:
    data = DataBundle(train=toy_data())
    with pytest.raises(CnnkitError, match="no checkpoint to resume"):
        fit(toy_model(), data, CONFIG, INFO, run_dir=tmp_path, resume=True, quiet=True)
    fit(toy_model(), data, CONFIG.replace(epochs=1), INFO, run_dir=tmp_path, quiet=True)
    with pytest.raises(CnnkitError, match="already holds a run"):
        fit(toy_model(), data, CONFIG, INFO, run_dir=tmp_path, quiet=True)


def test_resume_with_other_settings_is_refused_naming_them(tmp_path: Path) -> None:
    """A resume continues the run as configured: another lr or optimizer would silently make it
    another run (and overwrite its config.yaml); settings that change nothing computed may differ,
    and epochs (training on for longer)."""
    data = DataBundle(train=toy_data())
    fit(toy_model(), data, CONFIG.replace(epochs=1), INFO, run_dir=tmp_path, quiet=True)
    saved = (tmp_path / "config.yaml").read_text()
    with pytest.raises(CnnkitError, match=r"--resume: .* was trained with lr 0.05 \(now 0.1\), optimizer 'sgd' "
                                          r"\(now 'adamw'\); pass the run's own settings"):
        fit(toy_model(), data, CONFIG.replace(lr=0.1, optimizer="adamw"), INFO, run_dir=tmp_path, resume=True,
            quiet=True)
    assert (tmp_path / "config.yaml").read_text() == saved
    stale = tmp_path / ".last.pt.k1ll3d.tmp"  # what a SIGKILL in the middle of a checkpoint write leaves
    stale.write_bytes(b"half a checkpoint")
    summary = fit(toy_model(), data, CONFIG.replace(epochs=2, checkpoint_every_steps=2), INFO, run_dir=tmp_path,
                  resume=True, quiet=True)
    assert summary.epochs_run == 2
    assert not stale.exists(), "a resume removes the temporary files of interrupted writes"


def test_resume_of_another_model_setup_is_refused_naming_it(tmp_path: Path) -> None:
    """The checkpoint keeps what the run is of (fit's RunInfo): a resume at another input size or
    with other builder options trained on silently (the weights fit either way)."""
    import dataclasses

    data = DataBundle(train=toy_data())
    fit(toy_model(), data, CONFIG.replace(epochs=1), INFO, run_dir=tmp_path, quiet=True)
    other = dataclasses.replace(INFO, default_cfg=dataclasses.replace(INFO.default_cfg, input_size=(1, 16, 16)),
                                model_options={"drop_rate": 0.3})
    with pytest.raises(CnnkitError, match=r"cannot resume from .*last.pt: it is a run of default_cfg .*'input_size': "
                                          r"\[1, 8, 8\].*\(now .*\[1, 16, 16\].*\), model_options \{\} "
                                          r"\(now \{'drop_rate': 0.3\}\)"):
        fit(toy_model(), data, CONFIG.replace(epochs=2), other, run_dir=tmp_path, resume=True, quiet=True)
    assert fit(toy_model(), data, CONFIG.replace(epochs=2), INFO, run_dir=tmp_path, resume=True,
               quiet=True).epochs_run == 2


def test_a_finished_run_resumed_writes_the_same_summary(tmp_path: Path) -> None:
    """A kill after the last checkpoint but before summary.json: the resume wrote final = {}."""
    data = DataBundle(train=toy_data(), val=toy_data(32, seed=1), test=toy_data(32, seed=2))
    whole = fit(toy_model(), data, CONFIG.replace(epochs=2), INFO, run_dir=tmp_path, quiet=True)
    (tmp_path / "summary.json").unlink()
    again = fit(toy_model(), data, CONFIG.replace(epochs=2), INFO, run_dir=tmp_path, resume=True, quiet=True)
    assert again.final == whole.final and again.test == whole.test and again.best_epoch == whole.best_epoch
    assert again.final["val_top1"] > 0


def test_resume_with_other_augmentation_is_refused_naming_it(tmp_path: Path) -> None:
    """The run record holds the training augmentation's steps: a resume without the run's --augment
    (or its YAML `augment:` list) trained on with other augmentation, silently."""
    from cnnkit.data.augment_config import parse_augment
    from cnnkit.train.checkpoint import check_same_run

    flips = DataBundle(train=toy_data(), augment=parse_augment([{"hflip": 0.5}]))
    fit(toy_model(), flips, CONFIG.replace(epochs=1), INFO, run_dir=tmp_path, quiet=True)
    other = DataBundle(train=toy_data(), augment=parse_augment([{"vflip": 0.5}]))
    with pytest.raises(CnnkitError, match=r"it is a run of augment \[\{'name': 'hflip'.*\(now \[\{'name': 'vflip'"):
        fit(toy_model(), other, CONFIG.replace(epochs=2), INFO, run_dir=tmp_path, resume=True, quiet=True)
    assert fit(toy_model(), flips, CONFIG.replace(epochs=2), INFO, run_dir=tmp_path, resume=True,
               quiet=True).epochs_run == 2
    # a checkpoint written before the record held the augmentation resumes as before
    check_same_run(json.dumps({"model_name": "toy"}), json.dumps({"model_name": "toy", "augment": []}), "last.pt")


def test_dataset_smaller_than_a_batch_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CnnkitError, match="smaller than one batch"):
        fit(toy_model(), DataBundle(train=toy_data(8)), CONFIG, INFO, run_dir=tmp_path, quiet=True)


def test_meter_top1_top5_and_per_class_known_answer() -> None:
    meter = ClassificationMeter(num_classes=6, top_k=5)
    logits = torch.tensor([[6.0, 5, 4, 3, 2, 1], [1.0, 2, 3, 4, 5, 6], [0.0, 9, 0, 0, 0, 0]])
    targets = torch.tensor([0, 0, 1])  # right, wrong but outside the top 5 (0 is last), right
    meter.update(logits, targets, loss=0.5)
    metrics = meter.compute("val_")
    assert metrics["val_top1"] == pytest.approx(2 / 3) and metrics["val_top5"] == pytest.approx(2 / 3)
    assert metrics["val_loss"] == pytest.approx(0.5)
    per_class = meter.per_class_accuracy()
    assert per_class[:2] == [0.5, 1.0]


def test_lr_find_suggests_a_learning_rate_inside_the_sweep_and_leaves_the_model() -> None:
    model = toy_model()
    before = [p.clone() for p in model.parameters()]
    result = lr_find(model, toy_data(), CONFIG, num_steps=60, start_lr=1e-5, end_lr=10)
    # any LR of the sweep passed; the toy task trains at 0.01-0.1 (measured suggestion 0.073)
    assert 1e-3 <= result.suggestion <= 1 and min(result.losses) < 0.6 * result.losses[0]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert result.lrs == sorted(result.lrs)


def test_suggest_lr_finds_the_steepest_descent() -> None:
    lrs = [10.0**e for e in range(-6, 1)]
    losses = [2.0, 2.0, 1.9, 1.0, 0.9, 0.85, 0.8]  # steepest between 1e-4 and 1e-3
    assert suggest_lr(lrs, losses) in (1e-4, 1e-3)


def test_suggest_lr_ignores_dips_past_the_loss_minimum() -> None:
    """A sweep whose loss only rises, noisily: the dip at 0.1 is in the divergence, not a descent
    (hymenoptera, resnet18, 30 steps suggested 0.418)."""
    lrs = [10.0**e for e in range(-7, 2)]
    losses = [0.70, 0.71, 0.72, 0.75, 0.84, 1.12, 1.20, 1.05, 1.35]
    assert suggest_lr(lrs, losses) < 1e-4
    assert not loss_fell(losses) and loss_fell([2.0, 2.0, 1.9, 1.0, 0.9])


def test_yaml_config_with_unknown_key_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 2\nlearning_rate: 0.1\n")
    with pytest.raises(CnnkitError, match=r"unknown key\(s\) learning_rate"):
        load_config(path)



def test_yaml_config_reads_exponent_floats_and_names_bad_values(tmp_path: Path) -> None:
    """PyYAML reads `1e-3` (no dot) as a string: it must still be the float 0.001; values of the
    wrong type or out of range are errors naming the key, not a TypeError."""
    path = tmp_path / "run.yaml"
    path.write_text("lr: 1e-3\nwarmup_epochs: 1\n")
    config = load_config(path)
    assert config.lr == 0.001 and config.warmup_epochs == 1.0
    for line, message in [("epochs: five", "epochs must be int"), ("nesterov: 1", "nesterov must be bool"),
                          ("monitor_mode: maximum", "monitor_mode must be one of"),
                          ("early_stopping_patience: 0", "early_stopping_patience must be >= 1"),
                          ("mixup_alpha: -0.2", "mixup_alpha must be >= 0")]:
        path.write_text(line + "\n")
        with pytest.raises(CnnkitError, match=message):
            load_config(path)


@pytest.mark.parametrize("changes, message", [
    ({"optimizer": "sgd", "momentum": 0.0}, "nesterov needs momentum > 0"),  # torch: ValueError at the optimizer
    ({"momentum": -0.5}, r"momentum must be in \[0.0, 1.0\)"),
    ({"label_smoothing": 1.5}, "label_smoothing must be in"),  # torch: RuntimeError at the first step
    ({"ema_decay": 1.0}, r"ema_decay must be in \(0, 1\)"),  # was a ValueError
    ({"weight_decay": -0.1}, "weight_decay must be in"),  # was accepted: weights pushed away from zero
    ({"grad_clip_norm": 0.0}, "grad_clip_norm must be > 0"),  # was accepted: every gradient clipped to zero
    ({"schedule": "step", "step_size_epochs": 0}, "step_size_epochs must be >= 1"),  # ZeroDivisionError
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"schedule": "onecycle", "warmup_epochs": 2.0}, "warmup_epochs .* does not apply to the onecycle"),
    # the default mode is max: best.safetensors was the epoch of the highest validation loss
    ({"monitor": "val_loss"}, "monitor val_loss with monitor_mode max would keep its worst epoch"),
    ({"monitor": "val_top1", "monitor_mode": "min"}, "set monitor_mode max"),
])
def test_values_torch_would_refuse_or_ignore_are_errors_naming_the_key(tmp_path: Path, changes: dict,
                                                                       message: str) -> None:
    if "lr" not in changes:  # a saved run's config.yaml still reads: only training refuses them
        (tmp_path / "config.yaml").write_text(yaml.safe_dump({**CONFIG.to_dict(), **changes}))
        load_config(tmp_path / "config.yaml")
    with pytest.raises(CnnkitError, match=message):
        Trainer(toy_model(), toy_data(), CONFIG.replace(**changes), num_classes=2, run_dir=tmp_path)


def test_compiled_training_saves_plain_weights(tmp_path: Path) -> None:
    """`compile: true` trains through torch.compile; checkpoints keep the model's own names."""
    summary = fit(toy_model(), DataBundle(train=toy_data(), val=toy_data(32, seed=1)),
                  CONFIG.replace(epochs=1, compile=True), INFO, run_dir=tmp_path, quiet=True)
    assert summary.final["val_top1"] > 0.5
    model = toy_model()
    model.load_state_dict(load_file(tmp_path / "best.safetensors"))  # strict: no "_orig_mod." prefixes


def test_a_callback_stops_the_loop_and_early_stopping_is_one() -> None:
    """`should_stop` ends the run after the current step; early stopping stops at its patience."""
    from cnnkit.train.callbacks import Callback
    from cnnkit.train.trainer import Trainer

    class StopAfter(Callback):
        def __init__(self, steps: int) -> None:
            self.steps, self.seen = steps, 0

        def after_batch(self, trainer) -> None:
            self.seen += 1
            trainer.should_stop = self.seen >= self.steps

    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        stopper = StopAfter(3)
        trainer = Trainer(toy_model(), toy_data(), CONFIG, num_classes=2, run_dir=scratch, callbacks=[stopper])
        trainer.fit()
        assert trainer.state.step == 3 and trainer.state.epoch == 0, "stopped mid-epoch, epoch not counted"
    class StopBeforeEpoch(Callback):
        def before_epoch(self, trainer) -> None:
            trainer.should_stop = trainer.state.epoch == 1

    with tempfile.TemporaryDirectory() as scratch:  # a stop at the start of an epoch takes no step of it
        trainer = Trainer(toy_model(), toy_data(), CONFIG, num_classes=2, run_dir=scratch,
                          callbacks=[StopBeforeEpoch()])
        trainer.fit()
        assert trainer.state.step == trainer.steps_per_epoch, "it took one more step, in no checkpoint"
    with tempfile.TemporaryDirectory() as scratch:  # through fit, with a test split: no best epoch to test
        data = DataBundle(train=toy_data(), val=toy_data(32, seed=1), test=toy_data(32, seed=2))
        summary = fit(toy_model(), data, CONFIG, INFO, run_dir=scratch, quiet=True, callbacks=[StopAfter(3)])
        assert summary.epochs_run == 0 and summary.best_epoch is None and summary.test is None
    with tempfile.TemporaryDirectory() as scratch:
        patient = CONFIG.replace(epochs=12, lr=2.0, early_stopping_patience=2)  # a noisy loss
        trainer = Trainer(toy_model(), toy_data(), patient, num_classes=2, run_dir=scratch)
        trainer.fit()
        losses = [row["train_loss"] for row in trainer.state.history]
        best, waited, expected = float("inf"), 0, len(losses)
        for epoch, loss in enumerate(losses):
            best, waited = (loss, 0) if loss < best else (best, waited + 1)
            if waited == 2:
                expected = epoch + 1
                break
        assert len(losses) == expected < 12, "stopped exactly when 2 epochs in a row did not improve"


def test_a_monitor_that_is_no_metric_is_named_not_replaced_by_train_loss(tmp_path: Path) -> None:
    """`monitor: val_acc` (a typo of val_top1) silently picked best.safetensors and early stopping by
    train_loss; train_loss stands in only when there are no validation metrics."""
    data = DataBundle(train=toy_data(), val=toy_data(32, seed=1))
    with pytest.raises(CnnkitError, match=r"monitor 'val_acc' is not a metric of this run; its metrics: "
                                          r"train_loss, train_top1, lr, val_loss, val_top1"):
        fit(toy_model(), data, CONFIG.replace(epochs=1, monitor="val_acc"), INFO, run_dir=tmp_path / "a", quiet=True)
    summary = fit(toy_model(), DataBundle(train=toy_data()), CONFIG.replace(epochs=1), INFO, run_dir=tmp_path / "b",
                  quiet=True)
    assert summary.monitor == "train_loss"
