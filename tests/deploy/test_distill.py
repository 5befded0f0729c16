"""Distillation loss (Hinton et al. 2015): plain CE at alpha 0, the textbook gradient, and the trainer wiring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from colour_folders import make_tiny_folder
from tiny_runs import train_tiny_run, train_val_run

from cnnkit.cli import main
from cnnkit.deploy.distill import distillation_loss, soft_target_loss
from cnnkit.inference import read_summary


def _logits(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = 3 * torch.randn(6, 5, generator=generator)
    teacher = 3 * torch.randn(6, 5, generator=generator)
    return student, teacher, torch.randint(0, 5, (6,), generator=generator)


def test_alpha_zero_is_plain_cross_entropy_exactly() -> None:
    student, teacher, labels = _logits(0)
    hard = F.cross_entropy(student, labels)
    assert torch.equal(distillation_loss(student, teacher, hard, temperature=4.0, alpha=0.0), hard)


def test_soft_term_is_t_squared_kl() -> None:
    student, teacher, _ = _logits(1)
    t = 4.0
    p_t, p_s = (teacher / t).softmax(1), (student / t).softmax(1)
    by_hand = t**2 * (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    torch.testing.assert_close(soft_target_loss(student, teacher, t), by_hand, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("temperature", "alpha"), [(4.0, 0.9), (1.0, 0.5), (8.0, 1.0)])
def test_gradient_matches_the_closed_form(temperature: float, alpha: float) -> None:
    """d/ds = alpha * T * (softmax(s/T) - softmax(t/T)) / N + (1 - alpha) * (softmax(s) - onehot(y)) / N."""
    student, teacher, labels = _logits(2)
    student.requires_grad_(True)
    loss = distillation_loss(student, teacher, F.cross_entropy(student, labels), temperature=temperature, alpha=alpha)
    (gradient,) = torch.autograd.grad(loss, student)
    n, s = student.shape[0], student.detach()
    soft = alpha * temperature * ((s / temperature).softmax(1) - (teacher / temperature).softmax(1)) / n
    hard = (1 - alpha) * (s.softmax(1) - F.one_hot(labels, 5).float()) / n
    torch.testing.assert_close(gradient, soft + hard, rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("distill")
    data = make_tiny_folder(root / "data")
    return data, train_tiny_run(data, root / "teacher")


def test_distill_at_alpha_zero_trains_exactly_like_plain_training(tiny, tmp_path: Path, capsys) -> None:
    """Same seed, batches and recipe: with alpha 0 the student's weights equal `cnnkit train`'s bit for bit;
    with alpha 0.9 the teacher changes them, and the run records its teacher."""
    data, teacher = tiny
    common = ["--epochs", "1", "--batch-size", "8", "--lr", "0.003", "--quiet"]
    assert main(["train", str(data), "--model", "mnist_cnn", "--img-size", "16", "--out", str(tmp_path / "alone"),
                 *common]) == 0
    for alpha in ("0", "0.9"):
        assert main(["distill", str(teacher), str(data), "--student", "mnist_cnn", "--alpha", alpha,
                     "--out", str(tmp_path / f"d{alpha}"), *common]) == 0, capsys.readouterr().err
    alone = (tmp_path / "alone" / "best.safetensors").read_bytes()
    assert (tmp_path / "d0" / "best.safetensors").read_bytes() == alone
    assert (tmp_path / "d0.9" / "best.safetensors").read_bytes() != alone
    summary = read_summary(tmp_path / "d0.9")
    assert summary.model_name == "mnist_cnn" and summary.distillation["teacher_model"] == "compact_cnn"
    assert summary.teacher == str(teacher)
    assert summary.distillation["temperature"] == 4.0 and summary.distillation["alpha"] == 0.9
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "d0.9"), str(data), "--json"]) == 0


def test_bad_settings_are_named(tiny, tmp_path: Path, capsys) -> None:
    data, teacher = tiny
    assert main(["distill", str(teacher), str(data), "--student", "mnist_cnn", "--alpha", "1.5",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--alpha" in capsys.readouterr().err


def test_teacher_sees_the_students_very_batches(tiny, tmp_path: Path) -> None:
    """Teacher logits are computed on the fly, on the same (augmented, normalised) batch as the student's."""
    from cnnkit.deploy.distill import DistillationTrainer
    from cnnkit.deploy.from_run import open_run
    from cnnkit.train.model_setup import build_model
    from cnnkit.train.fit import fit

    data, teacher_run = tiny
    teacher = open_run(teacher_run, str(data), out=tmp_path / "spy")
    config = teacher.config.replace(epochs=1)
    student = build_model("mnist_cnn", num_classes=2, in_chans=3, seed=0)
    student.default_cfg = teacher.model.default_cfg
    seen: dict[str, list[torch.Tensor]] = {"student": [], "teacher": []}
    student.register_forward_pre_hook(lambda _, args: seen["student"].append(args[0].clone()) if student.training else None)
    teacher.model.register_forward_pre_hook(lambda _, args: seen["teacher"].append(args[0].clone()))

    def make_trainer(*positional, **keywords) -> DistillationTrainer:
        return DistillationTrainer(*positional, **keywords).configure(teacher.model, temperature=4.0, alpha=0.9)

    fit(student, teacher.bundle(config, student), config, teacher.info(student, "mnist_cnn"), run_dir=tmp_path / "spy",
        quiet=True, trainer_class=make_trainer)
    assert len(seen["teacher"]) == len(seen["student"]) > 1
    assert all(torch.equal(t, s) for t, s in zip(seen["teacher"], seen["student"]))


def test_distill_scores_teacher_and_student_on_one_split(tmp_path: Path, capsys) -> None:
    """Data given as train/val: teacher and student are both scored on val and printed side by side (the
    teacher's figure was `teacher_test_top1: null`, read from a test split the data does not have)."""
    data, teacher = train_val_run(tmp_path)
    out = tmp_path / "student"
    capsys.readouterr()
    assert main(["distill", str(teacher), str(data), "--student", "mnist_cnn", "--epochs", "1", "--batch-size", "8",
                 "--out", str(out), "--quiet"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    record = read_summary(out).distillation
    assert record["split"] == "val" and line.startswith("val top-1: teacher compact_cnn ")

    def eval_top1(run: Path) -> float:
        assert main(["eval", str(run), str(data), "--json"]) == 0
        return json.loads(capsys.readouterr().out)["val_top1"]

    assert record["teacher_top1"] == pytest.approx(eval_top1(teacher))
    assert record["student_top1"] == pytest.approx(eval_top1(out))
    assert f"{100 * record['student_top1']:.2f}%" in line
