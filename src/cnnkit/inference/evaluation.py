"""Evaluation through a Predictor's backend: the same loss, top-k and confusion as the trainer's
loop (`ClassificationMeter`), for any backend (torch, or an exported model in ONNX Runtime)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from cnnkit.inference.backends import Backend
from cnnkit.train.metrics import ClassificationMeter


def evaluate_backend(backend: Backend, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                     num_classes: int) -> ClassificationMeter:
    """Meter of `backend`'s logits over model-ready (N, C, H, W) batches with (N,) class targets."""
    meter = ClassificationMeter(num_classes)
    for images, targets in batches:
        logits = backend.logits(images).float().cpu()
        targets = targets.cpu()
        meter.update(logits, targets, float(F.cross_entropy(logits, targets)))
    return meter
