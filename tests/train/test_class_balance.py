"""Class balancing options of TrainConfig: a class-weighted loss and class-balanced epochs."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from cnnkit.train.callbacks import Callback

from train.toy_job import make_trainer, toy_data

# 100 items, every 10th class 0: weights N / (K * n_k) = 100 / (2 * 10) and 100 / (2 * 90).
IMBALANCED = {"train_data": toy_data(100, class0_every=10)}
EXPECTED_WEIGHTS = torch.tensor([5.0, 100 / 180])


def test_weighted_loss_is_torch_weighted_cross_entropy(tmp_path: Path) -> None:
    trainer = make_trainer(str(tmp_path), epochs=1, class_weighted_loss=True, **IMBALANCED)
    torch.testing.assert_close(trainer.class_weight, EXPECTED_WEIGHTS)
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.25], [-3.0, 1.0], [0.0, 0.0]])
    targets = torch.tensor([0, 1, 1, 0])
    torch.testing.assert_close(trainer.loss(logits, targets), F.cross_entropy(logits, targets, weight=EXPECTED_WEIGHTS))
    soft = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.0, 1.0], [0.5, 0.5]])
    torch.testing.assert_close(trainer.loss(logits, soft), F.cross_entropy(logits, soft, weight=EXPECTED_WEIGHTS))
    unweighted = make_trainer(str(tmp_path / "plain"), epochs=1, **IMBALANCED)
    torch.testing.assert_close(unweighted.loss(logits, targets), F.cross_entropy(logits, targets))


class LabelRecorder(Callback):
    """Per epoch, how many trained samples had each label (the rows of the meter's confusion)."""

    def __init__(self) -> None:
        self.labels: list[list[int]] = []

    def after_epoch(self, trainer) -> None:
        self.labels.append(trainer.meter.confusion.sum(dim=1).tolist())


def test_balanced_sampling_trains_on_both_classes_about_equally(tmp_path: Path) -> None:
    trainer = make_trainer(str(tmp_path), epochs=4, balanced_sampling=True, **IMBALANCED)
    recorder = LabelRecorder()
    trainer.callbacks.append(recorder)
    trainer.fit()
    per_class = torch.tensor(recorder.labels, dtype=torch.float64).sum(dim=0)
    # 4 epochs x 6 batches x 16 = 384 draws, P(class 0) = 0.5: standard deviation 0.026.
    assert per_class.sum() == 384
    assert 0.40 < float(per_class[0] / per_class.sum()) < 0.60, f"class 0 drawn {per_class[0]:.0f} of 384 times"
