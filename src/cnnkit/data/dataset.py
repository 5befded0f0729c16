"""The dataset contract every source meets: items are (uint8 image (C, H, W), int label).

`classes` names the labels, `targets` lists each item's label without decoding anything, and an
optional `transform` is applied to the uint8 image tensor. `load(i)` gives the untransformed
item, so a subset (a split) can carry its own transform over the same underlying data.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from cnnkit.errors import CnnkitError

Transform = Callable[[torch.Tensor], Any]
D = TypeVar("D", bound="ImageDataset")


class ImageDataset(Dataset):
    """Base class: subclasses set `classes` and `targets` and implement `load` and `__len__`."""

    classes: list[str]
    targets: list[int]
    transform: Transform | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        """The item at `index` before the transform: (uint8 (C, H, W), label)."""
        raise NotImplementedError

    def source(self, index: int) -> str | None:
        """Where the item at `index` comes from (its file), None for data held in memory."""
        return None

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.load(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def with_transform(self: D, transform: Transform | None) -> D:
        """A shallow copy sharing the data, with `transform` in place of the current one."""
        view = copy.copy(self)
        view.transform = transform
        return view

    def with_decode_hint(self: D, size_hint: tuple[int, int] | None) -> D:
        """This dataset decoding files for a pipeline that needs at least `size_hint` (width,
        height): JPEG DCT scaling (see `decode_image`). Datasets held in memory are unchanged."""
        return self

    def subset(self, indices: Sequence[int], *, transform: Transform | None = None) -> SubsetDataset:
        """The items at `indices` (e.g. one split), with their own transform."""
        return SubsetDataset(self, indices, transform=transform)


class ArrayImageDataset(ImageDataset):
    """Images held in memory as one uint8 array (N, C, H, W), e.g. MNIST, CIFAR, npz or wafer maps."""

    def __init__(
        self,
        images: np.ndarray,
        targets: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        *,
        transform: Transform | None = None,
    ) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}")
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} labels")
        self.images = images
        self.targets = [int(t) for t in targets]
        self.classes = list(classes)
        self.transform = transform
        _check_labels(self.targets, len(self.classes))

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        # A copy, so a transform working in place cannot change the dataset itself.
        return torch.from_numpy(self.images[index].copy()), self.targets[index]


class SubsetDataset(ImageDataset):
    """A view of some items of another dataset, keeping its classes and having its own transform."""

    def __init__(self, base: ImageDataset, indices: Sequence[int], *, transform: Transform | None = None) -> None:
        self.base = base
        self.indices = [int(i) for i in indices]
        if self.indices and (min(self.indices) < 0 or max(self.indices) >= len(base)):
            raise ValueError(f"subset indices out of range for a dataset of {len(base)} items")
        self.classes = base.classes
        self.targets = [base.targets[i] for i in self.indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        return self.base.load(self.indices[index])

    def source(self, index: int) -> str | None:
        return self.base.source(self.indices[index])

    def with_decode_hint(self, size_hint: tuple[int, int] | None) -> SubsetDataset:
        return SubsetDataset(self.base.with_decode_hint(size_hint), self.indices, transform=self.transform)


def _check_labels(targets: Sequence[int], num_classes: int) -> None:
    if targets and (min(targets) < 0 or max(targets) >= num_classes):
        raise CnnkitError(f"labels must lie in 0..{num_classes - 1}, got {min(targets)}..{max(targets)}")
