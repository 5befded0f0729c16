"""Image folders: `root/<class>/**/<image>`, or `root/{train,val,test}/<class>/**/<image>` as given splits.

Classes are the sorted class-folder names (the same label numbers in every split). Hidden files
and folders (any name starting with '.', e.g. `.ipynb_checkpoints`, `.DS_Store`) are ignored, as
are files without an image extension. Images are decoded lazily, one per `load`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnkit.data.dataset import ImageDataset, Transform
from cnnkit.data.decode import (
    DEFAULT_BACKGROUND,
    DEFAULT_MAX_PIXELS,
    BadImageError,
    OutputMode,
    SizeHint,
    decode_image,
)
from cnnkit.data.scan import BadFile
from cnnkit.errors import CnnkitError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
# Folder names taken as given splits when they are the only folders under the root (any case),
# and the split each one is: "valid"/"validation" are the validation split, "val", as the trainer names it.
SPLIT_OF_FOLDER = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
SPLIT_NAMES = frozenset(SPLIT_OF_FOLDER)
NO_GIVEN_SPLIT = "all"


@dataclass
class FolderListing:
    """The files of an image folder tree by split, before any decoding.

    `splits` maps a split name to (path, label) pairs; it is {"all": ...} when no split folders
    are given. `ignored` holds files skipped for their extension (not hidden files).
    """

    root: Path
    classes: list[str]
    splits: dict[str, list[tuple[str, int]]]
    ignored: list[str] = field(default_factory=list)


def is_image_folder(root: Path) -> bool:
    """True when `root` is a folder with at least one visible sub-folder (a class or a split)."""
    return root.is_dir() and any(_visible_dirs(root))


def list_image_folder(root: str | os.PathLike[str], *, allow_empty: bool = False) -> FolderListing:
    """List classes and image files under `root`; an empty class folder is an error naming it."""
    root = Path(root)
    if not root.is_dir():
        raise CnnkitError(f"image folder not found: {root}")
    top = _visible_dirs(root)
    if not top:
        raise CnnkitError(f"no class folders in {root} (expected {root}/<class>/<image>)")
    given_splits = all(d.name.lower() in SPLIT_NAMES for d in top)
    split_roots = _split_roots(top) if given_splits else {NO_GIVEN_SPLIT: root}
    class_dirs = {name: _visible_dirs(split_root) for name, split_root in split_roots.items()}
    classes = sorted({d.name for dirs in class_dirs.values() for d in dirs})
    if not classes:
        raise CnnkitError(f"no class folders in {root} (expected {root}/<split>/<class>/<image>)")
    label_of = {name: label for label, name in enumerate(classes)}
    listing = FolderListing(root=root, classes=classes, splits={})
    for split, dirs in class_dirs.items():
        pairs: list[tuple[str, int]] = []
        for class_dir in dirs:
            images, ignored = _split_by_extension(_walk_visible_files(class_dir))
            if not images and not allow_empty:
                raise CnnkitError(
                    f"empty class folder: {class_dir} has no image files "
                    f"(extensions {', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder "
                    f"(only `cnnkit data inspect --allow-empty`, or allow_empty=True in Python, accepts one)"
                )
            pairs.extend((path, label_of[class_dir.name]) for path in images)
            listing.ignored.extend(ignored)
        listing.splits[split] = pairs
    return listing


class FolderDataset(ImageDataset):
    """Image files with labels, decoded lazily to uint8 (C, H, W) in `mode` ("RGB" or "L").

    A file that fails to decode (one the scan did not already remove) is recorded in `bad_files`
    and the next file is returned in its place, so a run never stops on it. With DataLoader
    workers each worker records its own; scan first for the complete list.
    """

    def __init__(
        self,
        files: Sequence[str],
        targets: Sequence[int],
        classes: Sequence[str],
        *,
        mode: OutputMode = "RGB",
        size_hint: SizeHint | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        background: tuple[int, int, int] = DEFAULT_BACKGROUND,
        transform: Transform | None = None,
    ) -> None:
        if len(files) != len(targets):
            raise ValueError(f"{len(files)} files but {len(targets)} labels")
        self.files = list(files)
        self.targets = [int(t) for t in targets]
        self.classes = list(classes)
        self.mode: OutputMode = mode
        self.size_hint = size_hint
        self.max_pixels = max_pixels
        self.background = background
        self.transform = transform
        self.bad_files: list[BadFile] = []

    def __len__(self) -> int:
        return len(self.files)

    def with_decode_hint(self, size_hint: SizeHint | None) -> FolderDataset:
        view = copy.copy(self)
        view.size_hint = size_hint
        return view

    def source(self, index: int) -> str | None:
        return str(self.files[index])

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        for attempt in range(len(self.files)):
            position = (index + attempt) % len(self.files)
            try:
                return self._decode(position), self.targets[position]
            except BadImageError as error:
                self._record(BadFile(self.files[position], error.reason))
            except OSError as error:
                self._record(BadFile(self.files[position], f"cannot read ({error.strerror or error})"))
        raise CnnkitError(f"no file of this dataset could be decoded; first bad: {self.bad_files[0]}")

    def _decode(self, position: int) -> torch.Tensor:
        return decode_image(
            self.files[position],
            size_hint=self.size_hint,
            mode=self.mode,
            max_pixels=self.max_pixels,
            background=self.background,
        )

    def _record(self, bad: BadFile) -> None:
        if bad.path not in {b.path for b in self.bad_files}:
            self.bad_files.append(bad)


def _split_roots(top: list[Path]) -> dict[str, Path]:
    """Split name ("train", "val", "test") -> its folder; two folders of one split are an error naming both."""
    roots: dict[str, Path] = {}
    for folder in top:
        split = SPLIT_OF_FOLDER[folder.name.lower()]
        if split in roots:
            raise CnnkitError(f"{roots[split]} and {folder} are both the {split!r} split: keep one")
        roots[split] = folder
    return roots


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _walk_visible_files(folder: Path) -> list[str]:
    """Every non-hidden file under `folder`, in hidden-free sub-folders, sorted by path."""
    found: list[str] = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(os.path.join(current, f) for f in files if not f.startswith("."))
    return sorted(found)


def _split_by_extension(paths: list[str]) -> tuple[list[str], list[str]]:
    images = [p for p in paths if os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS]
    image_set = set(images)
    return images, [p for p in paths if p not in image_set]
