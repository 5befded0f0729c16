"""Data order and augmentation randomness that depend only on (seed, epoch, index).

That makes a run reproducible whatever the number of workers, and lets a resume continue in
the middle of an epoch: the sampler skips the samples already done and every sample draws
the same augmentation it would have drawn without the interruption.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Dataset, Sampler, TensorDataset


# Called as transform(image, generator=g): cnnkit.data transforms take their randomness that way.
SampleTransform = Callable[..., torch.Tensor]


def mix_seed(*parts: int) -> int:
    """One 63-bit seed from several integers (SplitMix64-style mixing), so that nearby
    (seed, epoch, index) tuples give unrelated random streams."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (part & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


def dataset_targets(dataset: Dataset) -> list[int]:
    """Each item's label: `dataset.targets` (cnnkit datasets, no decoding), a TensorDataset's last
    tensor, else read item by item."""
    targets = getattr(dataset, "targets", None)
    if targets is None and isinstance(dataset, TensorDataset):
        targets = dataset.tensors[-1]
    if targets is None:
        targets = [dataset[i][1] for i in range(len(dataset))]  # type: ignore[arg-type]
    return [int(t) for t in targets]


class EpochSampler(Sampler[tuple[int, int, int]]):
    """Yields (epoch, index, occurrence) keys: a seeded permutation per epoch (or the identity
    order, or with `item_weights` a seeded draw of `size` indices with replacement), this rank's
    share of it (DistributedSampler's padding rule; with `pad=False`, as for evaluation, every
    item exactly once in shares that may differ by one, unless there are fewer items than ranks:
    then padded, so that every rank has a batch), minus `skip` already-done samples.
    `occurrence` counts earlier appearances of `index` in the epoch (0 in a permutation), so that
    an item drawn twice is augmented twice, not copied."""

    def __init__(self, size: int, *, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1,
                 item_weights: torch.Tensor | None = None,
                 custom_order: Callable[[torch.Generator], list[int]] | None = None, pad: bool = True) -> None:
        if item_weights is not None and len(item_weights) != size:
            raise ValueError(f"item_weights has {len(item_weights)} entries for a dataset of {size}")
        self.size, self.seed, self.shuffle, self.item_weights = size, seed, shuffle, item_weights
        self.custom_order = custom_order  # e.g. P x K blocks for metric learning (cnnkit.embeddings)
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip = 0, 0
        self.pad = pad or size < world_size
        self.per_rank = -(-size // world_size) if self.pad else len(range(rank, size, world_size))

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        """Next iteration yields epoch `epoch`'s order without its first `skip` samples (this rank's)."""
        self.epoch, self.skip = epoch, skip

    def epoch_order(self) -> list[int]:
        """All ranks' indices of the current epoch, before sharding."""
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        if self.custom_order is not None:
            return self.custom_order(generator)
        if self.item_weights is not None:
            return torch.multinomial(self.item_weights, self.size, replacement=True, generator=generator).tolist()
        if self.shuffle:
            return torch.randperm(self.size, generator=generator).tolist()
        return list(range(self.size))

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        order = self.epoch_order()
        # DistributedSampler's padding: repeat the order as often as needed (more ranks than items too).
        total = self.per_rank * self.world_size if self.pad else len(order)
        padded = (order * -(-total // max(1, self.size)))[:total]
        seen: dict[int, int] = {}
        keys = []
        for index in padded:
            keys.append((self.epoch, index, seen.get(index, 0)))
            seen[index] = keys[-1][2] + 1
        yield from keys[self.rank :: self.world_size][self.skip :]

    def __len__(self) -> int:
        return self.per_rank - self.skip


class SeededSamples(Dataset):
    """Wraps a dataset of (image, label): item (epoch, index, occurrence) is transformed with a
    generator seeded from (seed, epoch, index), with the occurrence too after the first."""

    def __init__(self, dataset: Dataset, transform: SampleTransform | None, *, seed: int) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, seed
        # One generator re-seeded per item: manual_seed resets its whole state (normal-sample cache
        # included), so each item draws exactly what a fresh generator would, without allocating
        # one per image. Loader workers are processes, each with its own copy.
        self._generator = torch.Generator()

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        epoch, index, occurrence = key
        image, label = self.dataset[index]
        if self.transform is not None:
            parts = (self.seed, epoch, index) + ((occurrence,) if occurrence else ())
            image = self.transform(image, generator=self._generator.manual_seed(mix_seed(*parts)))
        return image, label
