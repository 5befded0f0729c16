"""The parts of a training step against their formulas: which parameters decay, the EMA of the
weights, gradient clipping, and label smoothing on mixed targets (timm's mixup_target)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cnnkit.models.factory import create_model
from cnnkit.train.callbacks import Callback
from cnnkit.train.optim import no_decay_parameter_names

from train.toy_job import make_trainer, toy_model


def test_no_decay_is_biases_norms_and_1d_parameters_known_answer() -> None:
    # toy_model: 0 conv, 1 BatchNorm, 6 Linear
    assert no_decay_parameter_names(toy_model()) == {"0.bias", "1.weight", "1.bias", "6.bias"}
    resnet = create_model("resnet18", num_classes=3)
    skip = no_decay_parameter_names(resnet)
    assert {"bn1.weight", "layer4.1.bn2.bias", "fc.bias"} <= skip
    assert not {"conv1.weight", "layer4.1.conv2.weight", "fc.weight"} & skip
    assert skip == {name for name, p in resnet.named_parameters() if p.ndim == 1}


class RecordWeights(Callback):
    """The model's float state after each optimizer step (after_batch follows the EMA update)."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def after_batch(self, trainer) -> None:
        self.states.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})


@pytest.mark.parametrize("accumulate", [1, 4])  # 4: optimizer steps of 4 and 2 of the 6 batches
def test_ema_is_the_exponential_average_of_every_steps_weights(tmp_path: Path, accumulate: int) -> None:
    trainer = make_trainer(str(tmp_path), epochs=1, ema_decay=0.8, checkpoint_every_steps=None,
                           accumulate_steps=accumulate)
    expected = copy.deepcopy(trainer.model.state_dict())
    recorder = RecordWeights()
    trainer.callbacks.append(recorder)
    trainer.fit()
    assert len(recorder.states) == trainer.steps_per_epoch == (6 if accumulate == 1 else 2)
    for state in recorder.states:
        for name, value in state.items():
            expected[name] = 0.8 * expected[name] + 0.2 * value if value.is_floating_point() else value
    ema = trainer.ema.state_dict()
    assert not torch.equal(ema["6.weight"], trainer.model.state_dict()["6.weight"])
    for name, value in expected.items():
        torch.testing.assert_close(ema[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_gradient_clipping_bounds_the_step_by_the_total_norm(tmp_path: Path) -> None:
    """Plain SGD at lr 1: the first update is minus the clipped gradient, of total norm grad_clip_norm."""
    trainer = make_trainer(str(tmp_path), epochs=1, grad_clip_norm=1e-3, lr=1.0, momentum=0.0, nesterov=False,
                           weight_decay=0.0, warmup_epochs=0, schedule="constant", ema_decay=None,
                           checkpoint_every_steps=None)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    recorder = RecordWeights()
    trainer.callbacks.append(recorder)
    trainer.fit()
    first = recorder.states[0]
    names = [name for name, _ in trainer.model.named_parameters()]
    step = torch.cat([(first[n] - b).flatten() for n, b in zip(names, before)])
    assert float(step.norm()) == pytest.approx(1e-3, rel=1e-4)


def test_label_smoothing_on_mixed_targets_is_timms_mixup_target(tmp_path: Path) -> None:
    """(1 - e) (lam y_a + (1 - lam) y_b) + e / K: smoothing each one-hot then mixing (timm), the
    soft-target cross-entropy of it."""
    trainer = make_trainer(str(tmp_path), epochs=1, label_smoothing=0.1)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 2, generator=generator)
    labels, partners, lam = torch.tensor([0, 1, 1, 0, 1, 0]), torch.tensor([3, 2, 0, 5, 1, 4]), 0.7
    one_hot = F.one_hot(labels, 2).float()
    mixed = lam * one_hot + (1 - lam) * one_hot[partners]
    off, on = 0.1 / 2, 1 - 0.1 + 0.1 / 2  # timm.data.mixup.mixup_target
    smoothed = torch.full((6, 2), off).scatter_(1, labels[:, None], on)
    timm_target = lam * smoothed + (1 - lam) * smoothed[partners]
    expected = (-timm_target * logits.log_softmax(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(trainer.loss(logits, mixed), expected)
    hard = (-smoothed * logits.log_softmax(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(trainer.loss(logits, labels), hard)
