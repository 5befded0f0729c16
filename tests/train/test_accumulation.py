"""Gradient accumulation against torch: N micro-batches of B make the step one batch of N x B makes,
and everything that acts per optimizer step (schedule, clipping, EMA, grad scaler, NaN policy) acts
once per N micro-batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.cli import build_parser
from cnnkit.data.loader import make_loader
from cnnkit.errors import CnnkitError
from cnnkit.train.accumulation import StepGroups
from cnnkit.train.callbacks import Callback
from cnnkit.train.config import TrainConfig, config_from_dict
from cnnkit.train.lr_find import lr_find
from cnnkit.train.options import resolve
from cnnkit.train.trainer import Trainer, TrainingDiverged

from train.toy_job import StopAfter, make_trainer, plain_model, toy_data

# 96 toy images in micro-batches of 8: 12 loader batches per epoch.
PLAIN = TrainConfig(epochs=2, batch_size=8, lr=0.1, optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=0.0,
                    schedule="constant", seed=3, channels_last=False, ema_decay=None)


def _plain_trainer(tmp_path: Path, **changes) -> Trainer:
    return Trainer(plain_model(), toy_data(), PLAIN.replace(**changes), num_classes=2, run_dir=tmp_path)


def _torch_steps(config: TrainConfig, *, images_per_step: int) -> dict[str, torch.Tensor]:
    """The oracle: plain torch SGD, one step per `images_per_step` consecutive images of each epoch
    (the last step of an epoch takes what is left), each on the mean cross-entropy of its batch."""
    model = plain_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov)
    loader = make_loader(toy_data(), batch_size=config.batch_size, train=True, seed=config.seed)
    for epoch in range(config.epochs):
        loader.set_epoch(epoch)
        batches = list(loader)
        images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        for start in range(0, len(images), images_per_step):
            optimizer.zero_grad()
            batch = slice(start, start + images_per_step)
            F.cross_entropy(model(images[batch]), labels[batch]).backward()
            if config.grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            optimizer.step()
    return model.state_dict()


@pytest.mark.parametrize("steps, clip", [(3, None), (5, 0.5)])  # 5: steps of 5, 5 and a last of 2 micro-batches
def test_accumulated_micro_batches_step_as_one_batch_of_all_of_them(tmp_path: Path, steps: int, clip) -> None:
    trainer = _plain_trainer(tmp_path, accumulate_steps=steps, grad_clip_norm=clip)
    trainer.fit()
    expected = _torch_steps(trainer.config, images_per_step=8 * steps)
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=2e-5, atol=2e-6, msg=name)
    unaccumulated = _torch_steps(trainer.config, images_per_step=8)
    assert not torch.allclose(trainer.model.state_dict()["4.weight"], unaccumulated["4.weight"], atol=1e-3)
    assert trainer.state.step == 2 * -(-12 // steps)


def test_accumulate_steps_1_is_a_plain_torch_step_bit_for_bit(tmp_path: Path) -> None:
    trainer = _plain_trainer(tmp_path, grad_clip_norm=0.5)
    trainer.fit()
    expected = _torch_steps(trainer.config, images_per_step=8)
    assert all(torch.equal(value, expected[name]) for name, value in trainer.model.state_dict().items())


class RecordSteps(Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.before = 0

    def before_batch(self, trainer) -> None:
        self.before += 1

    def after_batch(self, trainer) -> None:
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])


def test_the_schedule_advances_once_per_optimizer_step(tmp_path: Path) -> None:
    """Cosine over 2 epochs of 4 optimizer steps (12 micro-batches of 8, 3 per step): torch's
    CosineAnnealingLR over 8 steps, and AdamW's own step count is 8."""
    trainer = _plain_trainer(tmp_path, accumulate_steps=3, schedule="cosine", optimizer="adamw")
    recorder = RecordSteps()
    trainer.callbacks.append(recorder)
    trainer.fit()
    assert trainer.steps_per_epoch == 4 and recorder.before == 8
    reference = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=PLAIN.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=8)
    expected = []
    for _ in range(8):
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        schedule.step()
    assert recorder.lrs == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert {int(state["step"]) for state in trainer.optimizer.state.values()} == {8}


def test_the_grad_scaler_updates_once_per_optimizer_step(tmp_path: Path) -> None:
    """fp16: the scaler's growth tracker counts its updates (no overflow here). The EMA:
    test_step_parts.test_ema_is_the_exponential_average_of_every_steps_weights."""
    trainer = make_trainer(str(tmp_path), epochs=1, precision="fp16", accumulate_steps=2,
                           checkpoint_every_steps=None)
    trainer.fit()
    assert trainer.steps_per_epoch == 3  # 6 batches of 16
    assert trainer.scaler.state_dict()["_growth_tracker"] == 3


class NanAtBatch(Callback):
    """The model's output is NaN for loader batch `batch` of the first epoch (a forward hook)."""

    def __init__(self, batch: int) -> None:
        self.batch, self.handle = batch, None
        self.weights: list[dict[str, torch.Tensor]] = []

    def before_fit(self, trainer) -> None:
        def poison(module, inputs, output):
            return output * float("nan") if trainer.state.epoch == 0 and trainer.state.batch_in_epoch == self.batch \
                else output
        self.handle = trainer.model.register_forward_hook(poison)

    def after_batch(self, trainer) -> None:
        self.weights.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})

    def after_fit(self, trainer) -> None:
        self.handle.remove()


def test_a_non_finite_micro_batch_skips_its_whole_optimizer_step(tmp_path: Path) -> None:
    trainer = _plain_trainer(tmp_path, epochs=1, accumulate_steps=3, nan_policy="skip")
    nan = NanAtBatch(4)  # the second micro-batch of the second step
    trainer.callbacks.append(nan)
    trainer.fit()
    assert trainer.state.skipped_batches == 1 and trainer.state.step == 4
    assert all(torch.equal(nan.weights[0][k], nan.weights[1][k]) for k in nan.weights[0]), "step 2 changed weights"
    assert not torch.equal(nan.weights[1]["4.weight"], nan.weights[2]["4.weight"])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())

    stopping = _plain_trainer(tmp_path / "stop", epochs=1, accumulate_steps=3)
    stopping.callbacks.append(NanAtBatch(4))
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 1 \(epoch 1, batch 5, micro-batch 2/3 of the "
                                               r"step\)"):
        stopping.fit()


def test_step_groups_of_an_epoch() -> None:
    groups = StepGroups(size=5, batches=12)
    assert groups.steps_per_epoch == 3
    assert [b for b in range(12) if groups.starts_step(b)] == [0, 5, 10]
    assert [b for b in range(12) if groups.ends_step(b)] == [4, 9, 11]
    assert [groups.micro_batches(b) for b in (0, 4, 5, 10, 11)] == [5, 5, 5, 2, 2]
    assert [groups.steps_done(b) for b in (0, 5, 10, 12)] == [0, 1, 2, 3]


@pytest.mark.parametrize("value", [0, -2, 2.5, True, "2"])
def test_accumulate_steps_other_than_a_whole_number_from_1_is_refused_by_name(value) -> None:
    with pytest.raises(CnnkitError, match="accumulate_steps"):
        TrainConfig(accumulate_steps=value)
    with pytest.raises(CnnkitError, match="accumulate_steps"):
        config_from_dict({"accumulate_steps": value}, source="run.yaml")


def test_accumulate_steps_flag_and_yaml(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = build_parser()
    config, _ = resolve(parser.parse_args(["train", "data", "--accumulate-steps", "4"]), default_model="compact_cnn")
    assert config.accumulate_steps == 4
    (tmp_path / "run.yaml").write_text("accumulate_steps: 3\nbatch_size: 16\n")
    config, _ = resolve(parser.parse_args(["train", "data", "--config", str(tmp_path / "run.yaml")]),
                        default_model="compact_cnn")
    assert (config.accumulate_steps, config.batch_size) == (3, 16)
    with pytest.raises(CnnkitError, match="accumulate_steps must be a whole number >= 1"):
        resolve(parser.parse_args(["train", "data", "--accumulate-steps", "0"]), default_model="compact_cnn")
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "data", "--accumulate-steps", "1.5"])
    assert "--accumulate-steps" in capsys.readouterr().err


def test_lr_find_sweeps_optimizer_steps_of_the_effective_batch() -> None:
    """Micro-batches of 8 accumulated in pairs sweep as batches of 16 do (a BN-free model)."""
    config = PLAIN.replace(batch_size=16)
    sweep = {}
    for batch, steps in ((16, 1), (8, 2)):
        sweep[steps] = lr_find(plain_model(), toy_data(), config.replace(batch_size=batch, accumulate_steps=steps),
                               num_classes=2, start_lr=1e-3, end_lr=1.0, num_steps=8)
    assert len(sweep[2].lrs) == 8 and sweep[2].lrs == sweep[1].lrs
    torch.testing.assert_close(torch.tensor(sweep[2].losses), torch.tensor(sweep[1].losses), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------- what trains through the Trainer
def test_distillation_accumulates_with_the_teachers_logits_of_each_micro_batch(tmp_path: Path) -> None:
    from cnnkit.deploy.distill import DistillationTrainer

    weights = {}
    for batch, steps in ((16, 1), (8, 2)):
        student = DistillationTrainer(plain_model(), toy_data(), PLAIN.replace(batch_size=batch, accumulate_steps=steps),
                                      num_classes=2, run_dir=tmp_path / str(steps))
        student.configure(plain_model(seed=1), temperature=4.0, alpha=0.9).fit()
        weights[steps] = student.model.state_dict()
    for name, value in weights[1].items():
        torch.testing.assert_close(weights[2][name], value, rtol=2e-5, atol=2e-6, msg=name)
    undistilled = _plain_trainer(tmp_path / "plain", accumulate_steps=2)
    undistilled.fit()
    assert not torch.allclose(undistilled.model.state_dict()["4.weight"], weights[2]["4.weight"], atol=1e-3)


def test_the_effective_batch_is_in_the_progress_output_and_the_summary(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    from cnnkit.train.fit import DataBundle, RunInfo, fit
    from cnnkit.train.report import format_metrics
    from cnnkit.train.run_summary import read_summary

    fit(plain_model(), DataBundle(train=toy_data()), PLAIN.replace(epochs=1, accumulate_steps=3),
        RunInfo("toy", ["left", "right"]), run_dir=tmp_path)
    assert "effective batch 24 per optimizer step: --batch-size 8 x --accumulate-steps 3 x 1 process" in \
        capsys.readouterr().out
    summary = read_summary(tmp_path)
    assert summary.effective_batch_size == 24
    assert "(model toy, 1 epochs, effective batch 24, best" in format_metrics(summary, tmp_path)


def test_pruned_weights_stay_zero_through_accumulated_steps(tmp_path: Path) -> None:
    from cnnkit.deploy.masks import MaskHold, global_magnitude_masks

    trainer = _plain_trainer(tmp_path, accumulate_steps=3)
    masks = global_magnitude_masks(trainer.model, 0.5)
    trainer.callbacks.append(MaskHold(masks))
    trainer.fit()
    for name, mask in masks.items():
        weight = trainer.model.get_parameter(name)
        assert torch.all(weight[~mask.bool()] == 0) and torch.any(weight[mask.bool()] != 0), name


def test_finetune_phases_count_optimizer_steps_and_record_the_effective_batch(tmp_path: Path) -> None:
    from cnnkit.train.checkpoint import load_checkpoint
    from cnnkit.train.finetune import finetune, parse_phases
    from cnnkit.train.fit import DataBundle, RunInfo

    config = TrainConfig(batch_size=8, accumulate_steps=4, lr=0.05, optimizer="sgd", seed=1, weight_decay=0.0,
                         channels_last=False)
    summary = finetune(plain_model(), DataBundle(train=toy_data()), config, RunInfo("toy", ["left", "right"]),
                       parse_phases("head:1,all:2"), classifier_path="4", run_dir=tmp_path, quiet=True,
                       schedule="across")
    assert summary.effective_batch_size == 32 and summary.epochs_run == 3
    steps = [load_checkpoint(tmp_path / name / "last.pt")["trainer"]["step"] for name in ("phase1-head", "phase2-all")]
    assert steps == [3, 6]  # 12 micro-batches of 8 per epoch, 4 per step


def test_embedding_training_refuses_accumulation_by_name(tmp_path: Path) -> None:
    from cnnkit.embeddings.losses import make_loss
    from cnnkit.embeddings.model import EmbeddingModel, MetricLearner
    from cnnkit.embeddings.trainer import EmbeddingTrainer
    from cnnkit.models.factory import create_model

    learner = MetricLearner(EmbeddingModel(create_model("mnist_cnn", num_classes=2), 8), make_loss("triplet", 2, 8))
    data = torch.utils.data.TensorDataset(torch.randn(16, 1, 28, 28), torch.arange(16) % 2)
    with pytest.raises(CnnkitError, match="accumulate_steps 2 would not make a larger batch for the triplet loss"):
        EmbeddingTrainer(learner, data, PLAIN.replace(accumulate_steps=2), num_classes=2, run_dir=tmp_path)


def test_a_proxy_loss_accumulates_to_the_whole_batch_s_loss(tmp_path: Path) -> None:
    """ArcFace is a mean over samples against its proxies: the mean of two halves' losses is the
    whole batch's (what makes accumulating it exact), and its trainer accepts accumulate_steps."""
    from cnnkit.embeddings.losses import make_loss
    from cnnkit.embeddings.model import EmbeddingModel, MetricLearner
    from cnnkit.embeddings.trainer import EmbeddingTrainer
    from cnnkit.models.factory import create_model

    loss = make_loss("arcface", 3, 8, generator=torch.Generator().manual_seed(0))
    embeddings, labels = torch.randn(8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 3
    halves = (loss(embeddings[:4], labels[:4]) + loss(embeddings[4:], labels[4:])) / 2
    torch.testing.assert_close(halves, loss(embeddings, labels), rtol=1e-6, atol=1e-6)
    learner = MetricLearner(EmbeddingModel(create_model("mnist_cnn", num_classes=2), 8), make_loss("arcface", 2, 8))
    data = torch.utils.data.TensorDataset(torch.randn(16, 1, 28, 28), torch.arange(16) % 2)
    trainer = EmbeddingTrainer(learner, data, PLAIN.replace(accumulate_steps=2), num_classes=2, run_dir=tmp_path)
    assert trainer.effective_batch_size == 2 * PLAIN.batch_size


def test_a_checkpoint_inside_another_accumulation_step_is_refused_naming_the_setting(tmp_path: Path) -> None:
    """Checkpoints fall between optimizer steps; one of a run with 1 step per batch, resumed with 4,
    may fall inside a step of 4 (fit refuses the changed setting earlier, from config.yaml)."""
    cut = make_trainer(str(tmp_path), epochs=2)
    cut.callbacks.append(StopAfter(steps=3))
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    with pytest.raises(CnnkitError, match="after batch 3 of an epoch, inside an optimizer step of accumulate_steps 4"):
        make_trainer(str(tmp_path), epochs=2, accumulate_steps=4).fit(resume_from=tmp_path / "last.pt")
