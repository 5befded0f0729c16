"""Stratified, seeded train/val/test splits, saved as JSON beside a run so evaluation is reproducible.

Each class is shuffled with `np.random.default_rng(seed)` and cut by the fractions, the rounding
carried across classes, so every split keeps the class proportions and the overall sizes. For
datasets of files the JSON also records each split's files (relative to their common folder),
and loading it against a changed folder is an error rather than a silent reshuffle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnkit.data.dataset import ImageDataset, SubsetDataset
from cnnkit.errors import CnnkitError

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
DEFAULT_NAMES = ("train", "val", "test")
HELD_OUT_NAMES = ("test", "val")  # what a trained model is measured on, by preference
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Split:
    """Item indices per split name, the seed and fractions that made them, and optionally the files."""

    seed: int
    fractions: tuple[float, ...]
    indices: dict[str, list[int]]
    files: dict[str, list[str]] | None = None

    def subsets(self, dataset: ImageDataset) -> dict[str, SubsetDataset]:
        """One subset of `dataset` per split; refuses a dataset that is not the one split."""
        _check_matches(self, dataset)
        return {name: dataset.subset(indices) for name, indices in self.indices.items()}


def held_out_split(splits: Mapping[str, Sized]) -> str | None:
    """The split a model's figures are measured on: "test", else "val" (data given as train/val),
    the first with items; None when neither has any. Never "train": accuracy on the training data
    would pass for a test figure."""
    return next((name for name in HELD_OUT_NAMES if name in splits and len(splits[name]) > 0), None)


def make_split(
    targets: Sequence[int],
    *,
    seed: int,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    names: Sequence[str] = DEFAULT_NAMES,
    files: Sequence[str] | None = None,
) -> Split:
    """Split item indices by class proportion; `files` (one per item) are recorded when given."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != len(names):
        raise ValueError(f"{len(fractions)} fractions for {len(names)} split names {list(names)}")
    if min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    labels = np.asarray(targets, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[int]] = {name: [] for name in names}
    behind = np.zeros(len(fractions))
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        counts, behind = _round_counts(len(members), np.asarray(fractions), behind)
        for name, part in zip(names, np.split(members, np.cumsum(counts)[:-1])):
            chosen[name].extend(int(i) for i in part)
    indices = {name: sorted(found) for name, found in chosen.items()}
    recorded = None
    if files is not None:
        relative = _relative_files(files)
        recorded = {name: [relative[i] for i in found] for name, found in indices.items()}
    return Split(seed=seed, fractions=fractions, indices=indices, files=recorded)


def split_of(dataset: ImageDataset, *, seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> Split:
    """`make_split` for a dataset, recording its files when it has them."""
    return make_split(dataset.targets, seed=seed, fractions=fractions, files=getattr(dataset, "files", None))


def save_split(split: Split, path: str | os.PathLike[str]) -> None:
    """Write `split` as JSON (indices, seed, fractions, files when known)."""
    payload = {
        "version": _FORMAT_VERSION,
        "seed": split.seed,
        "fractions": list(split.fractions),
        "indices": split.indices,
        "files": split.files,
    }
    Path(path).write_text(json.dumps(payload, indent=1))


def load_split(path: str | os.PathLike[str]) -> Split:
    """Read a split written by `save_split`."""
    try:
        data = json.loads(Path(path).read_text())
        return Split(
            seed=int(data["seed"]),
            fractions=tuple(float(f) for f in data["fractions"]),
            indices={name: [int(i) for i in found] for name, found in data["indices"].items()},
            files=data.get("files"),
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CnnkitError(f"{path}: not a readable split file ({error})") from error


def _round_counts(total: int, fractions: np.ndarray, behind: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Integer counts for one class: each within 1 of total * fraction, summing to `total`.

    The items left over after flooring go to the splits furthest behind their exact share so far
    (`behind`, carried across classes), so the overall split sizes stay within 1 of exact too.
    """
    exact = fractions * total
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts + behind), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts.tolist(), behind + exact - counts


def _relative_files(files: Sequence[str]) -> list[str]:
    names = [os.fspath(f) for f in files]
    if not names:
        return []
    root = os.path.commonpath(names) if len(names) > 1 else os.path.dirname(names[0])
    return [Path(os.path.relpath(name, root)).as_posix() for name in names]


def _what_changed(split: Split, relative: Sequence[str]) -> str:
    """Which of the split's files are gone (deleted, or dropped by the scan as unreadable) and which are new."""
    saved = {name for names in (split.files or {}).values() for name in names}
    gone, new = sorted(saved - set(relative)), sorted(set(relative) - saved)

    def some(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    parts = ([f"{len(gone)} file(s) gone or unreadable ({some(gone)})"] if gone else []) + (
        [f"{len(new)} new file(s) ({some(new)})"] if new else [])
    return "; ".join(parts) or "the same files, listed in another order"


def _check_matches(split: Split, dataset: ImageDataset) -> None:
    size = len(dataset)
    files = getattr(dataset, "files", None)
    if split.files is not None and files is not None:
        relative = _relative_files(files)
        for name, found in split.indices.items():
            now = [relative[i] if i < size else None for i in found]
            if now != split.files.get(name):
                raise CnnkitError(f"split {name!r} no longer matches the dataset's files: "
                                  f"{_what_changed(split, relative)}; the run's split.json names the files it "
                                  "was trained and tested on: restore them or train a new run "
                                  "(`cnnkit data inspect DIR` lists files that do not decode)")
    used = [i for found in split.indices.values() for i in found]
    if used and max(used) >= size:
        raise CnnkitError(f"split refers to item {max(used)} but the dataset has {size} items")
