"""Evaluation of a model over a dataset: the loop shared by the trainer and `cnnkit eval`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from cnnkit.data.epoch_sampling import SampleTransform
from cnnkit.data.loader import BatchTransform, DeviceLoader, make_loader
from cnnkit.train.metrics import ClassificationMeter


def ordered_loader(dataset: Dataset, transform: SampleTransform | None, *, batch_size: int, seed: int,
                   num_workers: int = 0, rank: int = 0, world_size: int = 1,
                   device: str | torch.device = "cpu", batch_transform: BatchTransform | None = None,
                   channels_last: bool = False) -> DeviceLoader:
    """Batches of `dataset` in order, every item once (this rank's share), for evaluation."""
    return make_loader(dataset, batch_size=batch_size, train=False, seed=seed, num_workers=num_workers,
                       device=device, sample_transform=transform, batch_transform=batch_transform,
                       rank=rank, world_size=world_size, channels_last=channels_last)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_classes: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> ClassificationMeter:
    """Loss, top-k and confusion of `model` in eval mode over `loader` (mode restored after);
    the loader (any iterable of (images, labels)) delivers model-ready batches (`ordered_loader`
    applies the batch stage)."""
    was_training = model.training
    model.eval()
    meter = ClassificationMeter(num_classes)
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast():
            logits = model(images)
        meter.update(logits, targets, float(F.cross_entropy(logits.float(), targets)))
    model.train(was_training)
    return meter
