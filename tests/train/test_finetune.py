"""Freeze/unfreeze phases, frozen BatchNorm in eval mode, layer-wise LR decay, and resume across phases."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnkit.errors import CnnkitError
from cnnkit.models.factory import create_model
from cnnkit.train.callbacks import Callback
from cnnkit.train.checkpoint import load_checkpoint
from cnnkit.train.config import TrainConfig
from cnnkit.train.finetune import Phase, check_phases, finetune, parameter_stages, parse_phases, set_trainable
from cnnkit.train.fit import DataBundle, RunInfo
from cnnkit.train.optim import layerwise_lr_scale
from cnnkit.train.report import format_phases
from cnnkit.train.trainer import Trainer

from train.toy_job import toy_data, toy_model

CONFIG = TrainConfig(epochs=1, batch_size=16, lr=0.05, optimizer="sgd", seed=1, weight_decay=0.0)
INFO = RunInfo(model_name="toy", class_names=["left", "right"])
HEAD = "6"  # toy_model's final Linear


def test_parse_phases() -> None:
    assert parse_phases("head:2,all:3", unfrozen_lr_scale=0.1, layer_decay=0.5) == (
        Phase("head", 2), Phase("all", 3, lr_scale=0.1, layer_decay=0.5))
    assert parse_phases("head:5@1e-3,layer3+layer4:10@1e-4,all:5@1e-5") == (
        Phase("head", 5, lr=1e-3), Phase("layer3+layer4", 10, lr=1e-4), Phase("all", 5, lr=1e-5))
    assert parse_phases("head+layer4:2@0.01")[0].modules == ("layer4",), "the head always trains"
    assert parse_phases("layer4:3", unfrozen_lr_scale=0.2)[0].base_lr(1.0) == 0.2
    for bad in ("head", "head:0", "all:2@fast", "all:2@-1", "layer3++layer4:2", "all+layer4:2"):
        with pytest.raises(CnnkitError, match=re.escape(bad)):
            parse_phases(bad)


def test_module_names_are_checked_against_the_model_and_listed() -> None:
    check_phases(toy_model(), parse_phases("head:1,0+1:1@0.1,all:1"))
    with pytest.raises(CnnkitError, match=r"no module 'layer4'.*head, all, 0, 1, 2, 3, 4, 5, 6"):
        check_phases(toy_model(), parse_phases("head:1,layer4:1@1e-4"))


def test_partial_phase_trains_the_named_modules_and_the_head(tmp_path: Path) -> None:
    model = toy_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_trainable(model, HEAD, "0")
    trainer = Trainer(model, toy_data(), CONFIG, num_classes=2, run_dir=tmp_path)

    class CheckModes(Callback):
        def before_batch(self, t: Trainer) -> None:
            assert not t.model[1].training, "the BatchNorm of a frozen module stays in eval mode"

    trainer.callbacks.append(CheckModes())
    trainer.fit()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"0.weight", "0.bias", "6.weight", "6.bias"}, changed


def test_head_phase_trains_only_the_head_and_keeps_frozen_bn_statistics(tmp_path: Path) -> None:
    model = toy_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_trainable(model, HEAD, "head")
    trainer = Trainer(model, toy_data(), CONFIG, num_classes=2, run_dir=tmp_path)

    class CheckModes(Callback):
        def before_batch(self, t: Trainer) -> None:
            assert not t.model[1].training, "a frozen BatchNorm must stay in eval mode"
            assert t.model[3].training, "dropout still trains"

    trainer.callbacks.append(CheckModes())
    trainer.fit()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"6.weight", "6.bias"}, changed


def affine_free_model() -> torch.nn.Sequential:
    """BatchNorms without parameters: after the stem conv at the top level (1), and opening two
    pre-activation blocks (2.0, 3.0); the head is 7."""
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, affine=False),
        nn.Sequential(nn.BatchNorm2d(4, affine=False), nn.Conv2d(4, 4, 3, padding=1)),
        nn.Sequential(nn.BatchNorm2d(4, affine=False), nn.Conv2d(4, 4, 3, padding=1)),
        nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 2),
    )  # fmt: skip


@pytest.mark.parametrize("trainable, moving", [("head", set()), ("3", {"3.0"})])
def test_frozen_batch_norms_without_parameters_keep_their_statistics(tmp_path: Path, trainable: str,
                                                                     moving: set[str]) -> None:
    """affine=False BatchNorms have no parameters to freeze: those of the frozen part (the stem's,
    a frozen block's) stay in eval mode with fixed statistics, as affine ones do; the one opening a
    trained block (3.0) still learns its statistics though the module before it is frozen."""
    model = affine_free_model()
    norms = {"1", "2.0", "3.0"}
    before = {name: model.get_submodule(name).running_mean.clone() for name in norms}
    set_trainable(model, "7", trainable)
    trainer = Trainer(model, toy_data(), CONFIG, num_classes=2, run_dir=tmp_path)
    modes: set[tuple[str, bool]] = set()

    class RecordModes(Callback):
        def before_batch(self, t: Trainer) -> None:
            modes.update((name, t.model.get_submodule(name).training) for name in norms)

    trainer.callbacks.append(RecordModes())
    trainer.fit()
    assert modes == {(name, name in moving) for name in norms}
    changed = {name for name in norms if not torch.equal(before[name], model.get_submodule(name).running_mean)}
    assert changed == moving


def test_layerwise_lr_decay_scales_earlier_stages_down() -> None:
    model = toy_model()
    stages = parameter_stages(model)
    assert stages == ["0", "1", "6"]
    scale = layerwise_lr_scale(model, 0.5, stages)
    assert scale["6.weight"] == 1.0 and scale["1.weight"] == 0.5 and scale["0.weight"] == 0.25


class StopInPhaseTwo(Callback):
    def after_batch(self, trainer: Trainer) -> None:
        if "phase2" in str(trainer.run_dir) and trainer.state.step == 7:
            trainer.save_state()
            raise KeyboardInterrupt


def _every_phase_with(monkeypatch: pytest.MonkeyPatch, callback: Callback) -> None:
    """finetune's phases run with `callback` added (one that interrupts the run)."""
    import cnnkit.train.fit as fit_module

    original_fit = fit_module.fit

    def fit_with_callback(*args, callbacks=(), **kwargs):
        return original_fit(*args, callbacks=[*callbacks, callback], **kwargs)

    monkeypatch.setattr("cnnkit.train.finetune.fit", fit_with_callback)


def test_resume_across_phases_is_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    phases = (Phase("head", 2), Phase("all", 2, lr_scale=0.5, layer_decay=0.7))
    data = DataBundle(train=toy_data(), val=toy_data(32, seed=1))
    full = finetune(toy_model(), data, CONFIG, INFO, phases, classifier_path=HEAD, run_dir=tmp_path / "full", quiet=True)
    assert [p["trainable"] for p in full.phases] == ["head", "all"]

    _every_phase_with(monkeypatch, StopInPhaseTwo())
    with pytest.raises(KeyboardInterrupt):
        finetune(toy_model(), data, CONFIG, INFO, phases, classifier_path=HEAD, run_dir=tmp_path / "cut", quiet=True)
    monkeypatch.undo()
    saved = load_checkpoint(tmp_path / "cut" / "phase2-all" / "last.pt")
    assert len(saved["requires_grad"]) == 6, "the freeze state is part of the checkpoint"
    finetune(toy_model(), data, CONFIG, INFO, phases, classifier_path=HEAD, run_dir=tmp_path / "cut",
             resume=True, quiet=True)
    a = load_checkpoint(tmp_path / "full" / "phase2-all" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "phase2-all" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["class_names"] == ["left", "right"] and len(summary["phases"]) == 2
    assert (tmp_path / "cut" / "best.safetensors").exists()


class StopBeforePhaseTwo(Callback):
    def before_fit(self, trainer: Trainer) -> None:
        if trainer.run_dir.name.startswith("phase2"):
            raise KeyboardInterrupt


def test_resume_between_phases_with_a_test_split_is_bit_identical(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With a test split, fit tested the best epoch by loading its weights into the model itself: the
    next phase then started from phase 1's best weights, a resume from its last ones."""
    phases = (Phase("head", 3), Phase("all", 1, lr_scale=0.5))
    data = DataBundle(train=toy_data(), val=toy_data(32, seed=1), test=toy_data(32, seed=2))
    config = CONFIG  # val_top1 peaks at phase 1's second epoch: its best epoch is not its last
    full = finetune(toy_model(), data, config, INFO, phases, classifier_path=HEAD, run_dir=tmp_path / "full",
                    quiet=True)
    assert json.loads((tmp_path / "full" / "phase1-head" / "summary.json").read_text())["best_epoch"] != 2
    _every_phase_with(monkeypatch, StopBeforePhaseTwo())
    with pytest.raises(KeyboardInterrupt):
        finetune(toy_model(), data, config, INFO, phases, classifier_path=HEAD, run_dir=tmp_path / "cut", quiet=True)
    monkeypatch.undo()
    resumed = finetune(toy_model(), data, config, INFO, phases, classifier_path=HEAD, run_dir=tmp_path / "cut",
                       resume=True, quiet=True)
    a = load_checkpoint(tmp_path / "full" / "phase2-all" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "phase2-all" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test == full.test


class StopInPhase(Callback):
    def __init__(self, phase_dir: str, step: int) -> None:
        self.phase_dir, self.step = phase_dir, step

    def after_batch(self, trainer: Trainer) -> None:
        if trainer.run_dir.name == self.phase_dir and trainer.state.step == self.step:
            trainer.save_state()
            raise KeyboardInterrupt


def test_three_phases_with_module_names_resume_bit_identical_and_name_the_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    phases = parse_phases("head:1@0.05,0+1:2@0.02,all:1@0.01")
    data = DataBundle(train=toy_data(), val=toy_data(32, seed=1))
    full = finetune(toy_model(), data, CONFIG, INFO, phases, classifier_path=HEAD, run_dir=tmp_path / "full")
    out = capsys.readouterr().out
    assert "phase 1/3 (head) epoch 1/1" in out and "phase 2/3 (0+1) epoch 2/2" in out
    assert "phase 3/3 (all) epoch 1/1" in out
    assert full.epochs_run == 4 and [p["lr"] for p in full.phases] == [0.05, 0.02, 0.01]
    for index, (name, lr) in enumerate((("head", 0.05), ("0+1", 0.02), ("all", 0.01)), start=1):
        phase_dir = tmp_path / "full" / f"phase{index}-{name}"
        assert f"lr: {lr}" in (phase_dir / "config.yaml").read_text(), "each phase runs at its own LR"
        rows = (phase_dir / "metrics.csv").read_text().splitlines()
        last_lr = float(rows[-1].split(",")[rows[0].split(",").index("lr")])
        assert 0 < last_lr < lr, "cosine annealing within the phase"
    assert format_phases(full.phases, full.epochs_run) == (
        "phases: 1/3 head 1 epochs @ 0.05, 2/3 0+1 2 epochs @ 0.02, 3/3 all 1 epochs @ 0.01; total 4 epochs")

    _every_phase_with(monkeypatch, StopInPhase("phase2-0+1", 9))
    with pytest.raises(KeyboardInterrupt):
        finetune(toy_model(), data, CONFIG, INFO, phases, classifier_path=HEAD, run_dir=tmp_path / "cut", quiet=True)
    monkeypatch.undo()
    saved = load_checkpoint(tmp_path / "cut" / "phase2-0+1" / "last.pt")
    assert saved["requires_grad"] == ["0.weight", "0.bias", "1.weight", "1.bias", "6.weight", "6.bias"]
    assert saved["trainer"]["epoch"] == 1 and saved["trainer"]["batch_in_epoch"] == 3, "cut mid-epoch"
    finetune(toy_model(), data, CONFIG, INFO, phases, classifier_path=HEAD, run_dir=tmp_path / "cut",
             resume=True, quiet=True)
    a = load_checkpoint(tmp_path / "full" / "phase3-all" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "phase3-all" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["trainer"]["history"] == b["trainer"]["history"]


def _last_lr(phase_dir: Path) -> float:
    header, *rows = (phase_dir / "metrics.csv").read_text().splitlines()
    return float(rows[-1].split(",")[header.split(",").index("lr")])


@pytest.mark.parametrize("schedule", ["per_phase", "across"])
def test_cosine_runs_within_each_phase_or_across_all(tmp_path: Path, schedule: str) -> None:
    phases = parse_phases("head:1@0.05,all:1@0.01")
    data = DataBundle(train=toy_data())  # 96 images / 16 = 6 steps per epoch
    finetune(toy_model(), data, CONFIG, INFO, phases, classifier_path=HEAD, run_dir=tmp_path, quiet=True,
             schedule=schedule)
    cosine = lambda step, total: (1 + math.cos(math.pi * step / total)) / 2  # noqa: E731
    if schedule == "per_phase":
        expected = (0.05 * cosine(5, 6), 0.01 * cosine(5, 6))
    else:
        expected = (0.05 * cosine(5, 12), 0.01 * cosine(11, 12))
    got = (_last_lr(tmp_path / "phase1-head"), _last_lr(tmp_path / "phase2-all"))
    assert got == pytest.approx(expected, rel=1e-5)


def test_a_copy_of_the_best_weights_killed_midway_keeps_the_old_file_whole(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    phases = (Phase("head", 1),)
    data = DataBundle(train=toy_data(), val=toy_data(32, seed=1))
    finetune(toy_model(), data, CONFIG, INFO, phases, classifier_path=HEAD, run_dir=tmp_path, quiet=True)
    best = tmp_path / "best.safetensors"
    before = best.read_bytes()
    (tmp_path / ".best.safetensors.left-by-a-kill.tmp").write_bytes(before[:10])

    def copy_half_then_die(source, destination, length=0) -> None:
        destination.write(source.read(len(before) // 2))
        raise KeyboardInterrupt  # a kill in the middle of the copy

    monkeypatch.setattr("shutil.copyfileobj", copy_half_then_die)
    # shutil.copyfile (the old copy) takes a sendfile / copy_file_range fast path unless these are off.
    monkeypatch.setattr("shutil._USE_CP_SENDFILE", False, raising=False)
    monkeypatch.setattr("shutil._USE_CP_COPY_FILE_RANGE", False, raising=False)
    with pytest.raises(KeyboardInterrupt):  # the finished phase is skipped: straight to the copy
        finetune(toy_model(), data, CONFIG, INFO, phases, classifier_path=HEAD, run_dir=tmp_path, resume=True,
                 quiet=True)
    assert best.read_bytes() == before
    assert load_file(best).keys() == toy_model().state_dict().keys()
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind, nor one of an earlier kill"


class RecordMomentum(Callback):
    def __init__(self) -> None:
        self.momenta: list[float] = []

    def before_batch(self, trainer: Trainer) -> None:
        self.momenta.append(trainer.optimizer.param_groups[0]["momentum"])


def test_onecycle_across_phases_cycles_momentum_over_the_whole_run(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = RecordMomentum()
    _every_phase_with(monkeypatch, recorder)
    finetune(toy_model(), DataBundle(train=toy_data()), CONFIG.replace(schedule="onecycle"), INFO,
             parse_phases("head:1,all:1"), classifier_path=HEAD, run_dir=tmp_path, quiet=True, schedule="across")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=12)  # 2 phases x 6 steps
    expected = []
    for _ in range(12):
        expected.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        scheduler.step()
    assert recorder.momenta == pytest.approx(expected, rel=1e-12)


def test_a_zero_class_model_is_refused_naming_the_remedy(tmp_path: Path) -> None:
    """A timm-style feature extractor (num_classes=0) has no class scores to train."""
    model = create_model("mnist_cnn", num_classes=0, in_chans=1)
    with pytest.raises(CnnkitError, match=r"training needs class scores.*num_classes=0.*reset_classifier\(k\)"):
        Trainer(model, toy_data(), CONFIG, num_classes=2, run_dir=tmp_path)
