"""Per-channel mean and standard deviation of a dataset in one streaming pass, and well-known presets.

Pixels are taken as uint8 / 255 (the [0, 1] scale normalisation uses). Each chunk's count, mean
and sum of squared deviations are computed in float64 and merged with Chan, Golub & LeVeque's
parallel update (1979), so a pass over millions of pixels stays exact to float64 rounding.
The standard deviation is the population one (ddof=0), as normalisation constants are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from cnnkit.data.dataset import ArrayImageDataset, ImageDataset, SubsetDataset

_ARRAY_CHUNK = 4096


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and std (population, ddof=0) on the [0, 1] scale, and the pixel count per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    count: int


# Published normalisation constants on the [0, 1] scale.
IMAGENET = ChannelStats(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), count=0)
MNIST = ChannelStats(mean=(0.1307,), std=(0.3081,), count=0)
# CIFAR-10 train set, pixel std over all images (not the often-copied mean of per-image stds).
CIFAR10 = ChannelStats(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), count=0)
PRESETS = {"imagenet": IMAGENET, "mnist": MNIST, "cifar10": CIFAR10}


class RunningChannelStats:
    """Accumulates per-channel count, mean and M2 (sum of squared deviations) chunk by chunk."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def update(self, pixels: np.ndarray) -> None:
        """Add pixels shaped (N, C, H, W) or (C, H, W), already on the scale to report."""
        data = np.asarray(pixels, dtype=np.float64)
        if data.ndim == 3:
            data = data[None]
        channels = data.shape[1]
        flat = data.transpose(1, 0, 2, 3).reshape(channels, -1)
        count = flat.shape[1]
        if count == 0:
            return
        mean = flat.mean(axis=1)
        m2 = ((flat - mean[:, None]) ** 2).sum(axis=1)
        if self.mean is None:
            self.count, self.mean, self.m2 = count, mean, m2
            return
        if len(mean) != len(self.mean):
            raise ValueError(f"channel count changed from {len(self.mean)} to {len(mean)}")
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * count / total)
        self.count = total

    def result(self) -> ChannelStats:
        if self.mean is None or self.m2 is None:
            raise ValueError("no pixels seen: the dataset is empty")
        std = np.sqrt(self.m2 / self.count)
        return ChannelStats(tuple(float(m) for m in self.mean), tuple(float(s) for s in std), self.count)


def channel_stats(dataset: ImageDataset, *, max_items: int | None = None) -> ChannelStats:
    """Mean and std per channel of the (untransformed) images of `dataset`, on the [0, 1] scale.

    In-memory datasets are read in chunks of whole arrays; file datasets one decoded image at a
    time (sizes may differ). `max_items` limits the pass to the first items.
    """
    running = RunningChannelStats()
    for chunk in _uint8_chunks(dataset, max_items):
        running.update(chunk.astype(np.float64) / 255.0)
    return running.result()


def _uint8_chunks(dataset: ImageDataset, max_items: int | None) -> Iterable[np.ndarray]:
    limit = len(dataset) if max_items is None else min(max_items, len(dataset))
    array, indices = _backing_array(dataset)
    if array is not None:
        for start in range(0, limit, _ARRAY_CHUNK):
            stop = min(start + _ARRAY_CHUNK, limit)
            yield array[start:stop] if indices is None else array[np.asarray(indices[start:stop])]
        return
    for index in range(limit):
        image, _ = dataset.load(index)
        yield image.numpy()


def _backing_array(dataset: ImageDataset) -> tuple[np.ndarray | None, list[int] | None]:
    """The (N, C, H, W) array behind an in-memory dataset (or a subset of one), with the indices."""
    if isinstance(dataset, ArrayImageDataset):
        return dataset.images, None
    if isinstance(dataset, SubsetDataset) and isinstance(dataset.base, ArrayImageDataset):
        return dataset.base.images, dataset.indices
    return None, None
