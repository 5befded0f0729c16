"""The built-in dataset: synthetic wafer bin maps after WM-811K's published properties, no download.

Wu et al. 2015 ("Wafer Map Failure Pattern Recognition and Similarity Ranking for Large-Scale
Data Sets", which introduced WM-811K): three die states (0 no die, 1 pass, 2 fail); die grids
of varying size and aspect (about 15x15 to over 200x200 dies); background failures at a rate
that varies per wafer; one of 9 failure patterns with soft edges and varying density; a
labelled set dominated by "none" (`WM811K_COUNTS`).

Each wafer is rendered on its own die grid (rows x cols) and resized to `size` x `size` by
nearest neighbour, so a pixel is exactly one die's state and its mask bit exactly says whether
that die fails because of the pattern (a scratch is drawn as thick as one output pixel, so no
pattern disappears between sampled dies). Deterministic from the rng; NumPy only.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cnnkit.data.wafer_patterns import PATTERNS, Grid, Placement, make_grid
from cnnkit.errors import CnnkitError

WAFER_CLASSES: tuple[str, ...] = (
    "none",
    "center",
    "donut",
    "edge-loc",
    "edge-ring",
    "loc",
    "near-full",
    "random",
    "scratch",
)
# The labelled part of WM-811K (Wu et al. 2015, Table 1): 172,950 maps.
WM811K_COUNTS: dict[str, int] = {
    "none": 147_431, "edge-ring": 9_680, "edge-loc": 5_189, "center": 4_294, "loc": 3_593,
    "scratch": 1_193, "random": 866, "donut": 555, "near-full": 149,
}
Imbalance = Literal["balanced", "wm811k"]
IMBALANCES: tuple[str, ...] = ("balanced", "wm811k")
# loc and scratch defects can be confined to one half of the wafer (`Placement`).
PLACEABLE_CLASSES: tuple[str, ...] = ("loc", "scratch")

# WM-811K's die encoding.
OFF_WAFER, PASS, FAIL = 0, 1, 2
MIN_SIZE = 16
MIN_DIES = 15  # WM-811K's smallest die grids are about 15x15
# Under `imbalance="wm811k"` every class keeps at least this many maps (enough for a 70/15/15 split).
MIN_PER_CLASS = 10
# Background failure rate per wafer: log-uniform in this range.
BACKGROUND_FAILURE_RATE = (0.002, 0.05)
# A pattern instance must fail at least this fraction of the wafer's pixels (else it is redrawn).
MIN_DEFECT_FRACTION = 0.015
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


@dataclass(frozen=True)
class WaferMaps:
    """N wafer maps: `maps` (N, H, W) uint8 in {0 off-wafer, 1 pass, 2 fail}, `labels` (N,) int64
    indexing `class_names`, `masks` (N, H, W) bool: the pixels whose die fails because of the
    defect pattern (background failures excluded; all False for "none"), and `die_grids` (N, 2):
    each wafer's die grid (rows, cols) before resizing."""

    maps: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    die_grids: np.ndarray
    class_names: tuple[str, ...] = WAFER_CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """(N, 1, H, W) network input in [0, 1]: maps / 2 (off-wafer 0, pass 0.5, fail 1)."""
        return self.maps[:, None].astype(dtype) / 2

    def grey_levels(self) -> np.ndarray:
        """(N, 1, H, W) uint8 images: off-wafer 0, pass 128, fail 255."""
        return np.rint(self.images(np.float64) * 255).astype(np.uint8)

    def subset(self, indices: np.ndarray) -> WaferMaps:
        """The maps at `indices`, in that order."""
        return WaferMaps(self.maps[indices], self.labels[indices], self.masks[indices],
                         self.die_grids[indices], self.class_names)


def _whole(value: object, name: str) -> int:
    """`value` if it is an integer (a float such as 10.0, a bool or a string is a CnnkitError naming
    `name`, not a TypeError from deep inside NumPy or a silently truncated count)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise CnnkitError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    return int(value)


def class_counts(total: int, imbalance: Imbalance = "balanced", *,
                 min_per_class: int = MIN_PER_CLASS) -> tuple[int, ...]:
    """Maps per class (in `WAFER_CLASSES` order) summing to `total`: equal ("balanced", the
    remainder to the first classes) or in WM-811K's proportions with at least `min_per_class`."""
    classes = len(WAFER_CLASSES)
    total, min_per_class = _whole(total, "total"), _whole(min_per_class, "min_per_class")
    if imbalance == "balanced":
        if total < classes:
            raise CnnkitError(f"total must be >= {classes} for balanced classes, got {total}")
        return tuple(total // classes + (index < total % classes) for index in range(classes))
    if imbalance != "wm811k":
        raise CnnkitError(f"imbalance must be one of {IMBALANCES}, got {imbalance!r}")
    if total < classes * min_per_class + min_per_class:
        raise CnnkitError(f"total must be >= {(classes + 1) * min_per_class} for imbalance='wm811k', got {total}")
    frequency = np.array([WM811K_COUNTS[name] for name in WAFER_CLASSES], np.float64)
    counts = np.maximum(min_per_class, np.floor(total * frequency / frequency.sum())).astype(int)
    counts[WAFER_CLASSES.index("none")] += total - counts.sum()  # the majority class absorbs rounding
    return tuple(int(c) for c in counts)


def _die_grid(size: int, die_range: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """(rows, cols): a log-uniform side in `die_range` and an aspect (cols / rows) in 0.8..1.25."""
    low, high = die_range
    rows = int(round(np.exp(rng.uniform(np.log(low), np.log(high)))))
    cols = int(np.clip(round(rows * np.exp(rng.uniform(np.log(0.8), np.log(1.25)))), low, max(high, low)))
    return rows, cols


def _resize_index(dies: int, size: int) -> np.ndarray:
    """Nearest-neighbour source die of each of `size` output pixels (pixel centres)."""
    return np.minimum(((np.arange(size) + 0.5) * dies / size).astype(int), dies - 1)


def _placement_region(grid: Grid, placement: Placement) -> np.ndarray:
    if placement == "left":
        return grid.u < 0
    if placement == "right":
        return grid.u > 0
    return np.ones_like(grid.wafer)


def _one_wafer(class_name: str, size: int, die_range: tuple[int, int], placement: Placement,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(map, mask) at size x size of one wafer, and its die grid (rows, cols); the pattern is redrawn
    until at least MIN_DEFECT_FRACTION of the image's wafer pixels show it."""
    rows, cols = _die_grid(size, die_range, rng)
    grid = make_grid(rows, cols, thickness=max(1, int(np.ceil(max(rows, cols) / size))))
    pick_rows, pick_cols = np.ix_(_resize_index(rows, size), _resize_index(cols, size))
    wafer = grid.wafer[pick_rows, pick_cols]
    allowed = grid.wafer & (_placement_region(grid, placement) if class_name in PLACEABLE_CLASSES else True)
    min_pixels = max(3, round(MIN_DEFECT_FRACTION * wafer.sum()))
    mask = np.zeros_like(wafer)
    while class_name != "none":
        probability = PATTERNS[class_name](grid, placement, rng)
        die_mask = allowed & (rng.random(grid.wafer.shape) < probability)
        mask = die_mask[pick_rows, pick_cols]
        if mask.sum() >= min_pixels:
            break
    rate = np.exp(rng.uniform(*np.log(BACKGROUND_FAILURE_RATE)))
    background = (rng.random(grid.wafer.shape) < rate)[pick_rows, pick_cols]
    failing = mask | background
    wafer_map = np.where(wafer, np.where(failing, FAIL, PASS), OFF_WAFER).astype(np.uint8)
    return wafer_map, mask & wafer, (rows, cols)


def make_wafer_maps(per_class: int | Sequence[int], size: int = 32, *, rng: np.random.Generator,
                    placement: Placement = "anywhere", die_range: tuple[int, int] | None = None) -> WaferMaps:
    """Wafer maps of each of the 9 classes in shuffled order: `per_class` maps of each (an int) or
    `per_class[k]` of class k (see `class_counts`), size x size pixels. `placement` confines loc and
    scratch defects to one half of the wafer; `die_range` bounds the die grid's side (default
    15 to 2 * size dies, so a die is at least half a pixel)."""
    if isinstance(per_class, np.ndarray | Sequence) and not isinstance(per_class, str):  # a count per class
        counts = [_whole(count, f"per_class[{k}]") for k, count in enumerate(per_class)]
    else:
        counts = [_whole(per_class, "per_class")] * len(WAFER_CLASSES)
    if len(counts) != len(WAFER_CLASSES) or min(counts) < 0 or sum(counts) < 1:
        raise CnnkitError(f"per_class must be >= 1 or {len(WAFER_CLASSES)} counts >= 0, got {per_class}")
    if _whole(size, "size") < MIN_SIZE:
        raise CnnkitError(f"wafer map size must be >= {MIN_SIZE}, got {size}")
    if placement not in ("anywhere", "left", "right"):
        raise CnnkitError(f"placement must be 'anywhere', 'left' or 'right', got {placement!r}")
    if not isinstance(rng, np.random.Generator):
        raise CnnkitError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {rng!r}")
    die_range = die_range or (MIN_DIES, max(MIN_DIES, 2 * size))
    if not MIN_DIES <= die_range[0] <= die_range[1]:
        raise CnnkitError(f"die_range must satisfy {MIN_DIES} <= low <= high, got {die_range}")
    labels = np.repeat(np.arange(len(WAFER_CLASSES), dtype=np.int64), counts)
    maps = np.empty((len(labels), size, size), np.uint8)
    masks = np.empty((len(labels), size, size), bool)
    grids = np.empty((len(labels), 2), np.int64)
    for index, label in enumerate(labels):
        maps[index], masks[index], grids[index] = _one_wafer(WAFER_CLASSES[label], size, die_range, placement, rng)
    order = rng.permutation(len(labels))
    return WaferMaps(maps=maps[order], labels=labels[order], masks=masks[order], die_grids=grids[order])


def wafer_splits(n_per_class: int = 200, size: int = 32, *, seed: int, imbalance: Imbalance = "balanced",
                 shift_control: bool = False) -> dict[str, WaferMaps]:
    """Stratified train/val/test (70/15/15 of each class) from one seed; `imbalance` spreads
    9 * n_per_class maps over the classes (`class_counts`). With `shift_control`, loc and scratch
    defects sit only in the wafer's left half in train/val/test, and a fourth split "shifted"
    (test's class counts) has them only in the right half: positions never seen in training."""
    rng = np.random.default_rng(_whole(seed, "seed"))
    counts = class_counts(len(WAFER_CLASSES) * _whole(n_per_class, "n_per_class"), imbalance)
    n_train = [round(SPLIT_FRACTIONS["train"] * n) for n in counts]
    n_val = [round(SPLIT_FRACTIONS["val"] * n) for n in counts]
    n_test = [n - a - b for n, a, b in zip(counts, n_train, n_val)]
    if min(*n_train, *n_val, *n_test) < 1:
        raise CnnkitError(f"n_per_class={n_per_class} is too small for a train/val/test split of every class")
    maps = make_wafer_maps(counts, size, rng=rng, placement="left" if shift_control else "anywhere")
    # maps are already shuffled, so each class's first indices form a random sample of it.
    by_class = [np.flatnonzero(maps.labels == label) for label in range(len(WAFER_CLASSES))]
    splits = {}
    for name, low, high in (("train", [0] * len(counts), n_train),
                            ("val", n_train, [a + b for a, b in zip(n_train, n_val)]),
                            ("test", [a + b for a, b in zip(n_train, n_val)], counts)):
        indices = np.concatenate([members[lo:hi] for members, lo, hi in zip(by_class, low, high)])
        splits[name] = maps.subset(rng.permutation(indices))
    if shift_control:
        splits["shifted"] = make_wafer_maps(n_test, size, rng=rng, placement="right")
    return splits

