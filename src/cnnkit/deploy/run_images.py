"""A finished run's images as model-ready arrays: calibration images from its training split and
labelled test images, preprocessed exactly as at evaluation (the run's eval pipeline)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from cnnkit.data.pipeline import eval_pipeline
from cnnkit.data.splits import held_out_split
from cnnkit.deploy.from_run import SourceRun
from cnnkit.errors import CnnkitError
from cnnkit.train.evaluate import ordered_loader
from cnnkit.train.preprocessing import batch_stage


@dataclass(frozen=True)
class ImageBatches:
    """Float batches (N, C, H, W) as float32 arrays, and the labels of all images in order."""

    batches: tuple[np.ndarray, ...]
    labels: np.ndarray

    @property
    def count(self) -> int:
        return int(self.labels.shape[0])

    def first(self, n: int) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(self.batches)[:n])

    def drawn(self, limit: int, seed: int) -> torch.Tensor:
        """The images `split_batches(..., limit=limit, seed=seed)` draws from the same split, without
        decoding them again."""
        images = np.concatenate(self.batches)
        chosen = drawn_indices(len(images), limit, seed)
        return torch.from_numpy(images if chosen is None else images[chosen])

    def labelled(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(images (N, C, H, W), labels (N,)) per batch, as an evaluation loader yields them."""
        ends = np.cumsum([len(b) for b in self.batches])
        return [(torch.from_numpy(b), torch.from_numpy(self.labels[end - len(b):end]))
                for b, end in zip(self.batches, ends)]


def test_split(source: SourceRun) -> str:
    """The split accuracy is measured on: "test", else "val" (data given as train/val); never the
    training split, whose accuracy would pass for a test figure."""
    split = held_out_split(source.data.splits)
    if split is None:
        raise CnnkitError(f"the data of {source.path} has no test or val split with images to measure accuracy "
                          f"on (it has {sorted(source.data.splits)})")
    return split


def drawn_indices(count: int, limit: int | None, seed: int) -> list[int] | None:
    """Sorted indices of `limit` of `count` images drawn at random from `seed`; None: take all."""
    if limit is None or limit >= count:
        return None
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(count)[:limit])


def split_batches(source: SourceRun, split: str, *, limit: int | None = None, batch_size: int = 32,
                  seed: int = 0) -> ImageBatches:
    """`split` of the run's data through its eval pipeline; `limit` draws that many images at
    random (from `seed`) instead of taking all."""
    if split not in source.data.splits:
        raise CnnkitError(f"the data of {source.path} has no {split!r} split (it has {sorted(source.data.splits)})")
    evaluation = eval_pipeline(source.model.default_cfg)
    dataset: Dataset = source.data.splits[split].with_decode_hint(evaluation.decode_hint)  # as `cnnkit eval` decodes
    chosen = drawn_indices(len(dataset), limit, seed)
    if chosen is not None:
        dataset = Subset(dataset, chosen)
    loader = ordered_loader(dataset, evaluation.sample, batch_size=batch_size, seed=seed,
                            batch_transform=batch_stage(evaluation, None, len(source.data.class_names)))
    batches, labels = [], []
    for images, targets in loader:
        batches.append(images.float().contiguous().numpy())
        labels.append(targets.numpy())
    if not batches:
        raise CnnkitError(f"the {split!r} split of {source.path}'s data is empty")
    return ImageBatches(tuple(batches), np.concatenate(labels))
