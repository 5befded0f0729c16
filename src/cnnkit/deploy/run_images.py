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


def test_split(source: SourceRun) -> str:
    """The split accuracy is measured on: "test", else "val" (data given as train/val); never the
    training split, whose accuracy would pass for a test figure."""
    split = held_out_split(source.data.splits)
    if split is None:
        raise CnnkitError(f"the data of {source.path} has no test or val split with images to measure accuracy "
                          f"on (it has {sorted(source.data.splits)})")
    return split


def split_batches(source: SourceRun, split: str, *, limit: int | None = None, batch_size: int = 32,
                  seed: int = 0) -> ImageBatches:
    """`split` of the run's data through its eval pipeline; `limit` draws that many images at
    random (from `seed`) instead of taking all."""
    if split not in source.data.splits:
        raise CnnkitError(f"the data of {source.path} has no {split!r} split (it has {sorted(source.data.splits)})")
    dataset: Dataset = source.data.splits[split]
    if limit is not None and limit < len(dataset):
        order = np.random.default_rng(seed).permutation(len(dataset))[:limit]
        dataset = Subset(dataset, sorted(int(i) for i in order))
    evaluation = eval_pipeline(source.model.default_cfg)
    loader = ordered_loader(dataset, evaluation.sample, batch_size=batch_size, seed=seed,
                            batch_transform=batch_stage(evaluation, None, len(source.data.class_names)))
    batches, labels = [], []
    for images, targets in loader:
        batches.append(images.float().contiguous().numpy())
        labels.append(targets.numpy())
    if not batches:
        raise CnnkitError(f"the {split!r} split of {source.path}'s data is empty")
    return ImageBatches(tuple(batches), np.concatenate(labels))
