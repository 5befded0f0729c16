"""Data order and augmentation randomness that depend only on (seed, epoch, index).

That makes a run reproducible whatever the number of workers, and lets a resume continue in
the middle of an epoch: the sampler skips the batches already done and every sample draws
the same augmentation it would have drawn without the interruption.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Dataset, Sampler

# Called as transform(image, generator=g): cnnkit.data transforms take their randomness that way.
SampleTransform = Callable[..., torch.Tensor]


def _mix_seed(*parts: int) -> int:
    # SplitMix64-style mixing so that nearby (seed, epoch, index) give unrelated streams.
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (part & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields (epoch, index) pairs: a seeded permutation per epoch (or the identity order),
    this rank's share of it (DistributedSampler's padding rule), minus `skip` already-done samples."""

    def __init__(self, size: int, *, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip = 0, 0
        self.per_rank = -(-size // world_size)

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(_mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        padded = order + order[: self.per_rank * self.world_size - self.size]
        mine = padded[self.rank :: self.world_size]
        for index in mine[self.skip :]:
            yield self.epoch, index

    def __len__(self) -> int:
        return self.per_rank - self.skip


class SeededSamples(Dataset):
    """Wraps a dataset of (image, label): item (epoch, index) is transformed with a generator
    seeded from (seed, epoch, index)."""

    def __init__(self, dataset: Dataset, transform: SampleTransform | None, *, seed: int) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, seed
        # One generator re-seeded per item: manual_seed resets its whole state (normal-sample cache
        # included), so each item draws exactly what a fresh generator would, without allocating
        # one per image. Loader workers are processes, each with its own copy.
        self._generator = torch.Generator()

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = key
        image, label = self.dataset[index]
        if self.transform is not None:
            image = self.transform(image, generator=self._generator.manual_seed(_mix_seed(self.seed, epoch, index)))
        return image, label
