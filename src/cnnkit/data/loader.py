"""Fast, resumable batches: uint8 through the workers, float + Normalize + mixing on the device.

Workers decode and run the per-sample stage in uint8 (4x less to copy between processes than
float32); the collated batch is moved to the device (pinned memory on CUDA) and the batch stage
(float conversion, Normalize, erasing, MixUp/CutMix) runs there. All randomness comes from one
`seed` and never from a stream that runs across samples or batches: the order of epoch e from
(seed, e), sample i's augmentation from (seed, e, i), batch b's from (seed, e, b). So the batches
are the same whatever the number of workers, and `set_epoch(e, skip=k)` yields exactly the tail
of epoch e after its first k batches (how a run killed mid-epoch resumes bit-identically).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from cnnkit.data.epoch_sampling import (
    EpochSampler,
    SampleTransform,
    SeededSamples,
    dataset_targets,
    mix_seed,
)
from cnnkit.data.pipeline import Pipeline
from cnnkit.data.sampling import balanced_item_weights
from cnnkit.errors import CnnkitError

# mix(images, labels, generator=g) -> (images, soft targets (N, K)): MixUp, CutMix.
BatchMix = Callable[..., tuple[torch.Tensor, torch.Tensor]]
# (images, labels, generator) -> (images, soft targets or None): runs on the device, per batch.
BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor | None]]

# Tags the batch stage's seeds (seed, tag, epoch, batch) apart from the samples' (seed, epoch, index).
_BATCH_STREAM = 0xBA7C


def device_stage(batch: Callable[..., torch.Tensor] | None, mixers: Sequence[BatchMix] = ()) -> BatchTransform:
    """A BatchTransform: `batch` (a Pipeline's batch stage) then one of `mixers`, picked at random
    per batch when there are several (as timm does with MixUp and CutMix)."""
    mixers = list(mixers)

    def apply(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        if batch is not None:
            images = batch(images, generator=generator)
        if not mixers:
            return images, None
        mixer = mixers[int(torch.randint(len(mixers), (1,), generator=generator, device=generator.device))]
        return mixer(images, labels, generator=generator)

    return apply


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: seed Python's, NumPy's and torch's global RNGs in each worker, for user code
    that draws from them (cnnkit's transforms take explicit generators instead).

    torch gives each worker `base_seed + worker_id`, with base_seed drawn from the loader's
    generator, so the seeds are distinct per worker and reproducible from the loader's seed.
    """
    seed = get_worker_info().seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class DeviceLoader(DataLoader):
    """A DataLoader over an EpochSampler whose batches arrive on `device` with the batch stage
    applied, seeded per (seed, epoch, batch index). Call `set_epoch` before each epoch."""

    sampler: EpochSampler

    def __init__(
        self,
        dataset: SeededSamples,
        *,
        sampler: EpochSampler,
        device: torch.device,
        batch_transform: BatchTransform | None,
        channels_last: bool,
        **loader_options: Any,
    ) -> None:
        super().__init__(dataset, sampler=sampler, **loader_options)
        self.device, self.batch_transform, self.channels_last = device, batch_transform, channels_last
        self.seed, self.epoch, self.first_batch = sampler.seed, 0, 0

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        """The next pass yields epoch `epoch` from its batch `skip` on (the first `skip` are done)."""
        if not 0 <= skip <= self.batches_per_epoch:
            raise ValueError(f"skip must be in 0..{self.batches_per_epoch} batches, got {skip}")
        self.sampler.set_epoch(epoch, skip=skip * self.batch_size)
        self.epoch, self.first_batch = epoch, skip

    @property
    def batches_per_epoch(self) -> int:
        """Batches in a whole epoch on this rank, whatever `skip` is."""
        full, rest = divmod(self.sampler.per_rank, self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def labelled_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """(images (N, C, H, W), labels (N,), soft targets (N, K) or None when nothing mixed)."""
        for batch_index, (images, labels) in enumerate(super().__iter__(), start=self.first_batch):
            images = images.to(self.device, non_blocking=True)
            labels = torch.as_tensor(labels).to(self.device, non_blocking=True)
            if self.channels_last and images.ndim == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            soft = None
            if self.batch_transform is not None:
                generator = torch.Generator(device=self.device)
                generator.manual_seed(mix_seed(self.seed, _BATCH_STREAM, self.epoch, batch_index))
                images, soft = self.batch_transform(images, labels, generator)
            yield images, labels, soft

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels (N,)), or (images, soft targets (N, K)) after mixing."""
        for images, labels, soft in self.labelled_batches():
            yield images, labels if soft is None else soft


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
    sample_transform: SampleTransform | None = None,
    batch_transform: BatchTransform | None = None,
    rank: int = 0,
    world_size: int = 1,
    balanced: bool = False,
    channels_last: bool = False,
    prefetch_factor: int = 2,
    epoch_order: Callable[[torch.Generator], list[int]] | None = None,
) -> DeviceLoader:
    """Batches of `dataset` (items (image, label)) on `device`, this rank's share of each epoch.

    `train=True` shuffles per epoch (or, with `balanced`, draws with replacement inversely to
    class frequency) and drops the last partial batch (BatchNorm never sees a batch of one);
    `train=False` keeps the order and every item. Per-sample stage: `pipeline.sample` or
    `sample_transform`, in the workers; batch stage on the device: `pipeline.batch` then `mix`,
    or a whole `batch_transform`. Workers are persistent and seeded (`seed_worker`).
    `epoch_order(generator) -> len(dataset) indices` replaces the training shuffle (P x K blocks).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
    if pipeline is not None and (sample_transform is not None or batch_transform is not None):
        raise ValueError("pass either pipeline (+ mix) or sample_transform/batch_transform, not both")
    if mix is not None and batch_transform is not None:
        raise ValueError("mix is part of batch_transform already: pass one of them")
    if balanced and not train:
        raise ValueError("balanced sampling is for training loaders (train=True)")
    if pipeline is not None:
        sample_transform = pipeline.sample
    if pipeline is not None or mix is not None:
        batch_transform = device_stage(None if pipeline is None else pipeline.batch, [] if mix is None else [mix])
    size = len(dataset)  # type: ignore[arg-type]
    weights = balanced_item_weights(dataset_targets(dataset)) if balanced else None
    # Evaluation is not padded: under DDP every item counts once in the metrics the ranks sum.
    sampler = EpochSampler(size, seed=seed, shuffle=train, rank=rank, world_size=world_size, item_weights=weights,
                           custom_order=epoch_order if train else None, pad=train)
    if train and sampler.per_rank < batch_size:
        raise CnnkitError(
            f"the training set of {size} samples ({sampler.per_rank} per process) is smaller than one batch "
            f"of {batch_size}: lower the batch size (--batch-size) to at most {sampler.per_rank}"
        )
    device = torch.device(device)
    worker_options: dict[str, Any] = {}
    if num_workers > 0:
        worker_options = {"persistent_workers": True, "prefetch_factor": prefetch_factor, "worker_init_fn": seed_worker}
    return DeviceLoader(
        SeededSamples(dataset, sample_transform, seed=seed),
        sampler=sampler,
        device=device,
        batch_transform=batch_transform,
        channels_last=channels_last,
        batch_size=batch_size,
        drop_last=train,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        # Only the workers' base seed comes from it; without it, starting an epoch would draw from
        # torch's global RNG and shift the dropout stream of the training loop.
        generator=torch.Generator().manual_seed(seed),
        **worker_options,
    )
