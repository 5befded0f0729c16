"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009), in their binary or "python" (pickle) distributions.

Binary: CIFAR-10 records are 1 label byte + 3072 pixel bytes (data_batch_{1..5}.bin,
test_batch.bin, names in batches.meta.txt); CIFAR-100 records are coarse + fine label bytes +
3072 pixel bytes (train.bin, test.bin, names in {coarse,fine}_label_names.txt). Pixels are
stored channel-planar, R then G then B, 32x32 each, so a record reshapes to (3, 32, 32).
Python: dicts of a uint8 (N, 3072) array and label lists, read with the restricted unpickler.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from cnnkit.data.dataset import ArrayImageDataset
from cnnkit.data.safe_unpickle import safe_load
from cnnkit.errors import CnnkitError

IMAGE_BYTES = 3 * 32 * 32
CIFAR10_BIN_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_PY_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
LabelKind = Literal["fine", "coarse"]


def cifar_format(folder: Path) -> str | None:
    """Which CIFAR distribution `folder` holds ("cifar10-bin", "cifar100-bin", "cifar10-python",
    "cifar100-python"), or None."""
    if not folder.is_dir():
        return None
    if (folder / "test_batch.bin").is_file() or (folder / "data_batch_1.bin").is_file():
        return "cifar10-bin"
    if (folder / "train.bin").is_file() and (folder / "test.bin").is_file():
        return "cifar100-bin"
    if (folder / "test_batch").is_file() or (folder / "data_batch_1").is_file():
        return "cifar10-python"
    if (folder / "train").is_file() and (folder / "test").is_file() and (folder / "meta").is_file():
        return "cifar100-python"
    return None


def load_cifar(folder: str | os.PathLike[str], *, label: LabelKind = "fine") -> dict[str, ArrayImageDataset]:
    """The train and test splits of the CIFAR distribution in `folder` (uint8 (N, 3, 32, 32)).

    `label` picks CIFAR-100's fine (100) or coarse (20) labels; CIFAR-10 has only one kind.
    """
    folder = Path(folder)
    kind = cifar_format(folder)
    if kind == "cifar10-bin":
        names = _read_names(folder / "batches.meta.txt", 10)
        parts = {"train": _train_batches(folder, CIFAR10_BIN_TRAIN), "test": _existing(folder, ("test_batch.bin",))}
        return {s: _bin_dataset(files, 1, 0, names) for s, files in parts.items() if files}
    if kind == "cifar100-bin":
        names = _read_names(folder / f"{label}_label_names.txt", 100 if label == "fine" else 20)
        column = 1 if label == "fine" else 0
        return {s: _bin_dataset([folder / f"{s}.bin"], 2, column, names) for s in ("train", "test")}
    if kind == "cifar10-python":
        meta = safe_load(folder / "batches.meta") if (folder / "batches.meta").is_file() else {}
        names = _decoded(meta.get(b"label_names")) or [str(i) for i in range(10)]
        parts = {"train": _train_batches(folder, CIFAR10_PY_TRAIN), "test": _existing(folder, ("test_batch",))}
        return {s: _python_dataset(files, b"labels", names) for s, files in parts.items() if files}
    if kind == "cifar100-python":
        meta = safe_load(folder / "meta")
        count = 100 if label == "fine" else 20
        names = _decoded(meta.get(f"{label}_label_names".encode())) or [str(i) for i in range(count)]
        key = f"{label}_labels".encode()
        return {s: _python_dataset([folder / s], key, names) for s in ("train", "test")}
    raise CnnkitError(f"no CIFAR files in {folder} (expected data_batch_1.bin, train.bin or data_batch_1)")


def _bin_dataset(files: list[Path], label_bytes: int, label_column: int, names: list[str]) -> ArrayImageDataset:
    record = label_bytes + IMAGE_BYTES
    chunks = []
    for path in files:
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            raise CnnkitError(f"{path}: size {raw.size} is not a (non-zero) multiple of the {record}-byte CIFAR record")
        chunks.append(raw.reshape(-1, record))
    records = np.concatenate(chunks)
    images = records[:, label_bytes:].reshape(-1, 3, 32, 32)
    return ArrayImageDataset(np.ascontiguousarray(images), records[:, label_column].astype(np.int64), names)


def _python_dataset(files: list[Path], label_key: bytes, names: list[str]) -> ArrayImageDataset:
    images, labels = [], []
    for path in files:
        batch = safe_load(path)
        if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
            raise CnnkitError(f"{path}: expected a dict with b'data' and {label_key!r}")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
            raise CnnkitError(f"{path}: data must be (N, {IMAGE_BYTES}), got {data.shape}")
        batch_labels = np.asarray(batch[label_key], dtype=np.int64)
        if len(data) == 0 or batch_labels.shape != (len(data),):
            raise CnnkitError(f"{path}: {len(data)} images need as many {label_key!r}, got {batch_labels.shape}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    return ArrayImageDataset(np.concatenate(images), np.concatenate(labels), names)


def _train_batches(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """CIFAR-10's five training batches, all or none (a test-only folder): a partial set is refused."""
    found = _existing(folder, names)
    missing = [name for name in names if not (folder / name).is_file()]
    if found and missing:
        raise CnnkitError(f"{folder}: CIFAR-10 training batch(es) missing: {', '.join(missing)} (an unfinished download?)")
    return found


def _existing(folder: Path, names: tuple[str, ...]) -> list[Path]:
    return [folder / name for name in names if (folder / name).is_file()]


def _read_names(path: Path, count: int) -> list[str]:
    if not path.is_file():
        return [str(i) for i in range(count)]
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return names if len(names) == count else [str(i) for i in range(count)]


def _decoded(names: list | None) -> list[str] | None:
    if names is None:
        return None
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
