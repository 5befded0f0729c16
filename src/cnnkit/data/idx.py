"""MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST...), raw or gzip-compressed.

IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the
number of dimensions, then each dimension as a big-endian int32, then the data big-endian.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from cnnkit.data.dataset import ArrayImageDataset
from cnnkit.errors import CnnkitError

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
# Standard file-name stems of each split: (images, labels). Kaggle copies use '.' before idx.
IDX_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in one IDX file (gzip detected from its magic bytes, not its name)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise CnnkitError(f"{path}: corrupt gzip data ({error})") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise CnnkitError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise CnnkitError(f"{path}: IDX header names {ndim} dimensions but the file ends after {len(raw)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header_end], dtype=">i4"))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_end != expected:
        held = len(raw) - header_end
        raise CnnkitError(f"{path}: IDX header says shape {shape} ({expected} bytes), file holds {held}")
    return np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """The file for `stem` in `folder` (or its `raw/` sub-folder): raw, .gz, or with '.idx' spelling."""
    dotted = stem.replace("-idx", ".idx")
    for directory in (folder, folder / "raw"):
        for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
            if (directory / name).is_file():
                return directory / name
    return None


def is_idx_folder(folder: Path) -> bool:
    """True when `folder` holds the images and labels of at least one standard IDX split."""
    return folder.is_dir() and any(
        find_idx_file(folder, images) and find_idx_file(folder, labels) for images, labels in IDX_SPLITS.values()
    )


def load_idx_folder(
    folder: str | os.PathLike[str], *, class_names: list[str] | None = None
) -> dict[str, ArrayImageDataset]:
    """The train and test splits found in `folder`, as uint8 (N, 1, H, W) datasets.

    Classes default to the label values as strings ("0".."9"): the files do not name them
    (pass `class_names` for e.g. Fashion-MNIST's).
    """
    folder = Path(folder)
    splits: dict[str, ArrayImageDataset] = {}
    loaded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (images_stem, labels_stem) in IDX_SPLITS.items():
        images_path, labels_path = find_idx_file(folder, images_stem), find_idx_file(folder, labels_stem)
        if images_path is None or labels_path is None:
            continue
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise CnnkitError(f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
        if labels.shape != (len(images),):
            raise CnnkitError(f"{labels_path}: {labels.shape} labels for {len(images)} images")
        loaded[split] = (images, labels.astype(np.int64))
    if not loaded:
        raise CnnkitError(f"no IDX files in {folder} (expected e.g. {IDX_SPLITS['train'][0]}.gz)")
    num_classes = int(max(labels.max() for _, labels in loaded.values())) + 1
    classes = class_names if class_names is not None else [str(i) for i in range(num_classes)]
    for split, (images, labels) in loaded.items():
        splits[split] = ArrayImageDataset(images[:, None, :, :], labels, classes)
    return splits
