"""Freeze/unfreeze phases, frozen BatchNorm in eval mode, layer-wise LR decay, and resume across phases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.train.callbacks import Callback
from cnnkit.train.checkpoint import load_checkpoint
from cnnkit.train.config import TrainConfig
from cnnkit.train.finetune import Phase, finetune, parameter_stages, parse_phases, set_trainable
from cnnkit.train.fit import DataBundle, RunInfo
from cnnkit.train.optim import layerwise_lr_scale
from cnnkit.train.trainer import Trainer

from train.toy_job import toy_data, toy_model

CONFIG = TrainConfig(epochs=1, batch_size=16, lr=0.05, optimizer="sgd", seed=1, weight_decay=0.0)
INFO = RunInfo(model_name="toy", class_names=["left", "right"])
HEAD = "6"  # toy_model's final Linear


def test_parse_phases() -> None:
    assert parse_phases("head:2,all:3", unfrozen_lr_scale=0.1, layer_decay=0.5) == (
        Phase("head", 2), Phase("all", 3, lr_scale=0.1, layer_decay=0.5))
    with pytest.raises(CnnkitError, match="'body:2'"):
        parse_phases("body:2")


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


def test_resume_across_phases_is_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    phases = (Phase("head", 2), Phase("all", 2, lr_scale=0.5, layer_decay=0.7))
    data = DataBundle(train=toy_data(), val=toy_data(32, seed=1))
    full = finetune(toy_model(), data, CONFIG, INFO, phases, classifier_path=HEAD, run_dir=tmp_path / "full", quiet=True)
    assert [p["trainable"] for p in full.phases] == ["head", "all"]

    import cnnkit.train.fit as fit_module

    original_fit = fit_module.fit

    def crashing_fit(*args, callbacks=(), **kwargs):
        return original_fit(*args, callbacks=[*callbacks, StopInPhaseTwo()], **kwargs)

    monkeypatch.setattr("cnnkit.train.finetune.fit", crashing_fit)
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
