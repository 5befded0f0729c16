"""The one entry point for data: `open_source` / `open_dataset` recognise what a path holds.

Recognised, in this order: the built-in name "wafer" (synthetic wafer maps); a `.npz` file;
a folder of MNIST-style IDX files; a folder of a CIFAR-10/100 distribution (binary or python);
otherwise an image-folder tree (`root/<class>/...` or `root/{train,val,test}/<class>/...`).
Sources without given splits expose one split, "all"; asking for "train", "val" or "test"
then cuts a stratified, seeded split of it (70/15/15 by default, see `splits`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnkit.data.cifar import LabelKind, cifar_format, load_cifar
from cnnkit.data.dataset import ArrayImageDataset, ImageDataset, Transform
from cnnkit.data.decode import DEFAULT_MAX_PIXELS, ImageHeader, OutputMode, SizeHint
from cnnkit.data.folders import NO_GIVEN_SPLIT, FolderDataset, list_image_folder
from cnnkit.data.idx import is_idx_folder, load_idx_folder
from cnnkit.data.npz import load_npz
from cnnkit.data.scan import BadFile, scan_images
from cnnkit.data.splits import DEFAULT_FRACTIONS, DEFAULT_NAMES, split_of
from cnnkit.data.wafer import make_wafer_maps
from cnnkit.errors import CnnkitError

WAFER_NAME = "wafer"
DEFAULT_WAFER_PER_CLASS = 100


@dataclass
class DataSource:
    """What a path holds: its format, classes, datasets by split, and what was left out.

    `headers` (file sources, after a scan) gives each good file's size and mode; `bad_files`
    lists skipped files with the reason; `suspects` lists readable files in a format almost absent
    from the set (kept unless `drop_format_outliers`); `ignored` lists files without an image
    extension.
    """

    location: str
    format: str
    classes: list[str]
    splits: dict[str, ImageDataset]
    bad_files: list[BadFile] = field(default_factory=list)
    suspects: list[BadFile] = field(default_factory=list)
    headers: dict[str, ImageHeader] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    @property
    def has_given_splits(self) -> bool:
        return NO_GIVEN_SPLIT not in self.splits

    def dataset(
        self,
        split: str | None = None,
        *,
        seed: int = 0,
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        transform: Transform | None = None,
    ) -> ImageDataset:
        """One split as a dataset with `transform`.

        `split=None` is the whole source when it has no given splits (or only one). A derived
        split ("train", "val", "test" of a source without given splits) uses `seed` and `fractions`.
        """
        if split is None:
            if len(self.splits) != 1:
                raise CnnkitError(f"{self.location} has splits {sorted(self.splits)}: choose one")
            return next(iter(self.splits.values())).with_transform(transform)
        if split in self.splits:
            return self.splits[split].with_transform(transform)
        if not self.has_given_splits and split in DEFAULT_NAMES:
            whole = self.splits[NO_GIVEN_SPLIT]
            indices = split_of(whole, seed=seed, fractions=fractions).indices[split]
            return whole.subset(indices, transform=transform)
        raise CnnkitError(f"{self.location} has no split {split!r} (it has {sorted(self.splits)})")

    def nonempty(self, split: str | None) -> ImageDataset:
        """`dataset(split)`, refused naming the path when no item is left (e.g. every file is bad)."""
        dataset = self.dataset(split)
        if len(dataset) == 0:
            where = self.location if split is None else f"{self.location} [{split}]"
            raise CnnkitError(f"{where}: no readable image ({len(self.bad_files)} bad file(s); "
                              "`cnnkit data inspect` lists them)")
        return dataset


def open_source(
    path_or_name: str | os.PathLike[str],
    *,
    scan: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    scan_cache: str | os.PathLike[str] | None = None,
    allow_empty: bool = False,
    drop_format_outliers: bool = False,
    mode: OutputMode = "RGB",
    size_hint: SizeHint | None = None,
    cifar_label: LabelKind = "fine",
    class_names: list[str] | None = None,
    wafer_per_class: int = DEFAULT_WAFER_PER_CLASS,
    wafer_size: int = 32,
    seed: int = 0,
) -> DataSource:
    """Recognise and open a dataset (see the module docstring for the formats).

    Image folders: `scan` checks every file first (thread pool of `workers`, optional JSON
    `scan_cache`) and leaves bad ones out; files are decoded lazily to `mode` with `size_hint`.
    `class_names` names IDX labels; `cifar_label` picks CIFAR-100 fine or coarse labels;
    `wafer_per_class`, `wafer_size` and `seed` generate the built-in wafer maps.
    """
    location = os.fspath(path_or_name)
    path = Path(location)
    if location == WAFER_NAME and not path.exists():
        return _open_wafer(wafer_per_class, wafer_size, seed)
    if not path.exists():
        raise CnnkitError(f"no dataset at {location!r} (not a path, and not the built-in name {WAFER_NAME!r})")
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise CnnkitError(f"{location}: a dataset file must be .npz (or give a folder)")
        return _array_source(location, "npz", load_npz(path))
    if is_idx_folder(path):
        return _array_source(location, "idx", load_idx_folder(path, class_names=class_names))
    cifar = cifar_format(path)
    if cifar is not None:
        return _array_source(location, cifar, load_cifar(path, label=cifar_label))
    listing = list_image_folder(path, allow_empty=allow_empty)
    all_files = [file for pairs in listing.splits.values() for file, _ in pairs]
    source = DataSource(location, "folder", listing.classes, {}, ignored=listing.ignored)
    if scan:
        result = scan_images(
            all_files,
            max_pixels=max_pixels,
            workers=workers,
            cache_path=scan_cache,
            drop_format_outliers=drop_format_outliers,
        )
        source.bad_files, source.suspects, source.headers = result.bad, result.suspects, result.headers
    bad = {b.path for b in source.bad_files}
    for split, pairs in listing.splits.items():
        kept = [(file, label) for file, label in pairs if file not in bad]
        source.splits[split] = FolderDataset(
            [file for file, _ in kept],
            [label for _, label in kept],
            listing.classes,
            mode=mode,
            size_hint=size_hint,
            max_pixels=max_pixels,
        )
    return source


def open_dataset(
    path_or_name: str | os.PathLike[str],
    split: str | None = None,
    *,
    transform: Transform | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    **options,
) -> ImageDataset:
    """Open `path_or_name` and return one split of it (see `DataSource.dataset`).

    `options` are those of `open_source`; `seed` also seeds derived splits and wafer maps.
    """
    source = open_source(path_or_name, seed=seed, **options)
    return source.dataset(split, seed=seed, fractions=fractions, transform=transform)


def _array_source(location: str, fmt: str, splits: dict[str, ArrayImageDataset]) -> DataSource:
    classes = next(iter(splits.values())).classes
    return DataSource(location, fmt, classes, dict(splits))


def _open_wafer(per_class: int, size: int, seed: int) -> DataSource:
    maps = make_wafer_maps(per_class, size, rng=np.random.default_rng(seed))
    # Die states off-wafer / pass / fail (0, 1, 2) become grey levels 0, 128, 255.
    levels = np.rint(maps.images(np.float64) * 255).astype(np.uint8)
    dataset = ArrayImageDataset(levels, maps.labels, list(maps.class_names))
    return DataSource(WAFER_NAME, "wafer", dataset.classes, {NO_GIVEN_SPLIT: dataset})
