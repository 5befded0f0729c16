"""Knowledge distillation (Hinton, Vinyals & Dean 2015): a student trained on a teacher's softened outputs.

loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

The T^2 keeps the soft term's gradient on the scale of the hard one as T changes: its gradient with
respect to the student logits is alpha * T * (softmax(s / T) - softmax(t / T)) / N.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.train.trainer import Trainer


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch; logits (N, K)."""
    student = F.log_softmax(student_logits.float() / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return temperature**2 * F.kl_div(student, teacher, reduction="batchmean", log_target=True)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, hard_loss: torch.Tensor, *,
                      temperature: float, alpha: float) -> torch.Tensor:
    """alpha * soft term + (1 - alpha) * `hard_loss` (the cross-entropy against the labels)."""
    return alpha * soft_target_loss(student_logits, teacher_logits, temperature) + (1.0 - alpha) * hard_loss


def check_settings(temperature: float, alpha: float) -> None:
    """A CnnkitError naming --temperature (> 0) or --alpha (in [0, 1]) when out of range."""
    if temperature <= 0:
        raise CnnkitError(f"--temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise CnnkitError(f"--alpha must be in [0, 1], got {alpha}")


class DistillationTrainer(Trainer):
    """The trainer with the distillation loss: the teacher (frozen, eval mode) sees the same
    augmented batch as the student, its logits computed on the fly."""

    teacher: nn.Module
    temperature: float = 4.0
    alpha: float = 0.9

    def configure(self, teacher: nn.Module, *, temperature: float, alpha: float) -> DistillationTrainer:
        check_settings(temperature, alpha)
        self.teacher = teacher.to(self.device).eval()
        for param in self.teacher.parameters():
            param.requires_grad_(False)
        self.temperature, self.alpha = temperature, alpha
        return self

    def _forward_backward(self, images: torch.Tensor, targets: torch.Tensor, soft_targets: torch.Tensor | None,
                          **step: Any) -> None:
        """The teacher's logits of this (micro-)batch beside the student's (`step`: the Trainer's)."""
        with torch.no_grad(), self._autocast():
            self._teacher_logits = self.teacher(images)
        try:
            super()._forward_backward(images, targets, soft_targets, **step)
        finally:
            self._teacher_logits = None

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hard = super().loss(logits, targets)
        teacher_logits = getattr(self, "_teacher_logits", None)
        if teacher_logits is None:
            return hard
        return distillation_loss(logits, teacher_logits, hard, temperature=self.temperature, alpha=self.alpha)
