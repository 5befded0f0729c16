"""Fast, reproducible batches: uint8 through the workers, float + Normalize + mixing on the device.

Workers decode and run the pipeline's per-sample stage in uint8 (4x less to copy between
processes than float32); the collated uint8 batch is moved to the device (pinned memory on
CUDA) and the batch stage (float conversion, Normalize, erasing) and MixUp/CutMix run there.
Everything random is seeded from one `seed`: the sampler's order, each worker's transform
generator, and the batch stage's generator, so two runs with the same seed give equal batches.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler, get_worker_info

from cnnkit.data.pipeline import Pipeline
from cnnkit.errors import CnnkitError

BatchMix = Callable[..., tuple[torch.Tensor, torch.Tensor]]

# Offsets that give the random streams distinct seeds derived from the user's one seed: the
# shuffle order uses `seed` itself, then transforms, batch stage, and the workers' base seeds.
_SAMPLE_STREAM, _BATCH_STREAM, _WORKER_STREAM = 1, 2, 3


class AugmentedSamples(Dataset):
    """`dataset` items with the per-sample transform applied, drawing from `self.generator`.

    Each worker process replaces `generator` with its own, seeded in `seed_worker`.
    """

    def __init__(self, dataset: Dataset, transform: Callable[..., torch.Tensor], *, seed: int) -> None:
        self.dataset = dataset
        self.transform = transform
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        image, label = self.dataset[index]
        return self.transform(image, generator=self.generator), label


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: seed Python, NumPy and torch, and the worker's transform generator.

    torch gives each worker `base_seed + worker_id`, with base_seed drawn from the loader's
    generator, so the seeds are distinct per worker and reproducible from the loader's seed.
    """
    info = get_worker_info()
    seed = info.seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if isinstance(info.dataset, AugmentedSamples):
        info.dataset.generator = torch.Generator().manual_seed(seed + _SAMPLE_STREAM)


class DeviceLoader(DataLoader):
    """A DataLoader whose batches arrive on `device` with the batch stage and mixing applied."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        device: torch.device,
        batch_transform: Callable[..., torch.Tensor] | None,
        mix: BatchMix | None,
        batch_generator: torch.Generator,
        **loader_options: Any,
    ) -> None:
        super().__init__(dataset, **loader_options)
        self.device = device
        self.batch_transform = batch_transform
        self.mix = mix
        self.batch_generator = batch_generator

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in super().__iter__():
            images = images.to(self.device, non_blocking=True)
            labels = torch.as_tensor(labels).to(self.device, non_blocking=True)
            if self.batch_transform is not None:
                images = self.batch_transform(images, generator=self.batch_generator)
            if self.mix is not None:
                images, labels = self.mix(images, labels, generator=self.batch_generator)
            yield images, labels


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    train: bool,
    seed: int = 0,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    pipeline: Pipeline | None = None,
    mix: BatchMix | None = None,
    prefetch_factor: int = 2,
) -> DeviceLoader:
    """Batches (images (N, C, H, W) on `device`, labels (N,) or soft (N, K) after `mix`).

    `train=True` shuffles with a generator seeded by `seed` and drops the last partial batch
    (BatchNorm never sees a batch of one); `pipeline.sample` runs per item in the workers,
    `pipeline.batch` and `mix` on the device. Workers are persistent and seeded (`seed_worker`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if train and len(dataset) < batch_size:
        raise CnnkitError(
            f"the training set has {len(dataset)} samples, fewer than one batch of {batch_size}; "
            f"lower the batch size to at most {len(dataset)}"
        )
    device = torch.device(device)
    order_generator = torch.Generator().manual_seed(seed)
    items: Dataset = dataset
    if pipeline is not None:
        items = AugmentedSamples(dataset, pipeline.sample, seed=seed + _SAMPLE_STREAM)
    sampler = RandomSampler(items, generator=order_generator) if train else SequentialSampler(items)
    worker_options: dict[str, Any] = {}
    if num_workers > 0:
        worker_options = {"persistent_workers": True, "prefetch_factor": prefetch_factor, "worker_init_fn": seed_worker}
    return DeviceLoader(
        items,
        device=device,
        batch_transform=None if pipeline is None else pipeline.batch,
        mix=mix,
        batch_generator=torch.Generator().manual_seed(seed + _BATCH_STREAM),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=train,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed + _WORKER_STREAM),
        **worker_options,
    )
