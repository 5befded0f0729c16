"""NumPy `.npz` archives of images and labels (read with allow_pickle=False: no code can run).

Keys: `images` and `labels` (one split, "all"), or Keras-style `x_train`/`y_train` and
`x_test`/`y_test` (given splits); optional `classes` (names, one per label).
Image layouts: (N, H, W) grey; (N, H, W, C) or (N, C, H, W) with C = 1 or 3 (when both axis 1
and the last axis could be channels, the last one is: the NumPy/PIL convention).
Dtypes: uint8 as is; floats within [0, 1] are scaled by 255, other numeric data is taken as
0..255 values; both are rounded and clipped to uint8.
Labels: integers 0..K-1, or strings (classes are then the sorted distinct strings).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnnkit.data.dataset import ArrayImageDataset
from cnnkit.errors import CnnkitError

_CHANNEL_COUNTS = (1, 3)
_SPLIT_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}


def load_npz(path: str | os.PathLike[str]) -> dict[str, ArrayImageDataset]:
    """The split(s) stored in the archive at `path`: {"all": ...} or {"train": ..., "test": ...}."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CnnkitError(f"{path}: not a readable .npz archive ({error})") from error
    with archive:
        keys = set(archive.files)
        if {"images", "labels"} <= keys:
            pairs = {"all": ("images", "labels")}
        else:
            pairs = {s: k for s, k in _SPLIT_KEYS.items() if set(k) <= keys}
        if not pairs:
            wanted = "arrays 'images' and 'labels' (or x_train/y_train)"
            raise CnnkitError(f"{path}: expected {wanted}, found {sorted(keys)}")
        arrays = {s: (archive[x], archive[y]) for s, (x, y) in pairs.items()}
        given_classes = [str(c) for c in archive["classes"]] if "classes" in keys else None
    for split, (images, labels) in arrays.items():
        if labels.ndim != 1 or len(labels) != len(images) or not len(labels):
            raise CnnkitError(f"{path}[{split}]: {len(images)} images need as many labels (N,), got {labels.shape}")
    classes, label_maps = _classes(path, [labels for _, labels in arrays.values()], given_classes)
    return {
        split: ArrayImageDataset(to_nchw_uint8(images, name=f"{path}[{split}]"), label_maps(labels), classes)
        for split, (images, labels) in arrays.items()
    }


def to_nchw_uint8(images: np.ndarray, *, name: str = "images") -> np.ndarray:
    """Bring an image array to uint8 (N, C, H, W) following the layout and dtype rules above."""
    if images.ndim == 3:
        images = images[:, None, :, :]
    elif images.ndim == 4 and images.shape[-1] in _CHANNEL_COUNTS:
        images = images.transpose(0, 3, 1, 2)
    elif images.ndim != 4 or images.shape[1] not in _CHANNEL_COUNTS:
        layouts = "(N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1 or 3"
        raise CnnkitError(f"{name}: expected {layouts}, got {images.shape}")
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    if images.dtype.kind not in "uif":
        raise CnnkitError(f"{name}: images must be numeric, got dtype {images.dtype}")
    values = images.astype(np.float64)
    if images.dtype.kind == "f" and values.size and values.min() >= 0.0 and values.max() <= 1.0:
        values = values * 255.0
    return np.ascontiguousarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def _classes(path: Path, label_arrays: list[np.ndarray], given: list[str] | None):
    """Class names and a function mapping a label array to ints 0..K-1."""
    if all(labels.dtype.kind in "iu" for labels in label_arrays):
        low = int(min(labels.min() for labels in label_arrays))
        count = int(max(labels.max() for labels in label_arrays)) + 1
        if low < 0 or (given is not None and count > len(given)):
            limit = "" if given is None else f" (its 'classes' names {len(given)})"
            raise CnnkitError(f"{path}: labels must lie in 0..K-1{limit}, got {low}..{count - 1}")
        classes = given if given is not None else [str(i) for i in range(count)]
        return classes, lambda labels: labels.astype(np.int64)
    if all(labels.dtype.kind in "US" for labels in label_arrays):
        names = sorted({str(v) for labels in label_arrays for v in labels.tolist()})
        index = {name: i for i, name in enumerate(names)}
        return names, lambda labels: np.array([index[str(v)] for v in labels.tolist()], dtype=np.int64)
    raise CnnkitError(f"{path}: labels must be integers or strings, got {[a.dtype for a in label_arrays]}")
