"""The built-in dataset: synthetic wafer bin maps in the style of WM-811K, no download needed.

A circular wafer on a square grid of dies, each die passing or failing, with random background
failures plus one of 9 defect patterns (Wu et al. 2015, "Wafer Map Failure Pattern Recognition
and Similarity Ranking for Large-Scale Data Sets", which introduced WM-811K). Every pattern
varies in position, size, orientation and density, so the class is a matter of shape and radial
position, not of any single die. Deterministic from the rng; NumPy only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

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

# WM-811K's die encoding.
OFF_WAFER, PASS, FAIL = 0, 1, 2
MIN_SIZE = 16
MAX_BACKGROUND_FAILURE_RATE = 0.04
# A pattern instance must fail at least this fraction of the wafer's dies (else it is redrawn).
MIN_DEFECT_FRACTION = 0.015


@dataclass(frozen=True)
class WaferMaps:
    """N wafer maps: `maps` (N, H, W) uint8 in {0 off-wafer, 1 pass, 2 fail}, `labels` (N,) int64
    indexing `class_names`, and `masks` (N, H, W) bool: the dies failing because of the defect
    pattern (background failures excluded; all False for class "none")."""

    maps: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    class_names: tuple[str, ...] = WAFER_CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """(N, 1, H, W) network input in [0, 1]: maps / 2 (off-wafer 0, pass 0.5, fail 1)."""
        return self.maps[:, None].astype(dtype) / 2

    def subset(self, indices: np.ndarray) -> WaferMaps:
        """The maps at `indices`, in that order."""
        return WaferMaps(self.maps[indices], self.labels[indices], self.masks[indices], self.class_names)


@dataclass(frozen=True)
class _Grid:
    """Die coordinates normalised to the wafer radius: u, v (x right, y down), r, theta; `wafer` mask."""

    u: np.ndarray
    v: np.ndarray
    r: np.ndarray
    theta: np.ndarray
    wafer: np.ndarray
    radius_in_dies: float


def _grid(size: int) -> _Grid:
    center = (size - 1) / 2
    radius = size / 2 - 0.5
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    u, v = (x - center) / radius, (y - center) / radius
    r = np.hypot(u, v)
    return _Grid(u=u, v=v, r=r, theta=np.arctan2(v, u), wafer=r <= 1.0, radius_in_dies=radius)


def _ellipse(grid: _Grid, cu: float, cv: float, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Dies inside a randomly stretched and rotated ellipse of mean radius `radius` around (cu, cv)."""
    aspect = rng.uniform(0.7, 1.4)
    angle = rng.uniform(0, np.pi)
    du, dv = grid.u - cu, grid.v - cv
    along = du * np.cos(angle) + dv * np.sin(angle)
    across = -du * np.sin(angle) + dv * np.cos(angle)
    return (along / (radius * aspect)) ** 2 + (across * aspect / radius) ** 2 <= 1.0


def _arc(grid: _Grid, rng: np.random.Generator, min_fraction: float) -> np.ndarray:
    """Dies within a random angular sector covering at least `min_fraction` of the circle."""
    span = 2 * np.pi * rng.uniform(min_fraction, 1.0)
    start = rng.uniform(0, 2 * np.pi)
    return np.mod(grid.theta - start, 2 * np.pi) <= span


def _polar_point(rng: np.random.Generator, r_low: float, r_high: float) -> tuple[float, float]:
    r, angle = rng.uniform(r_low, r_high), rng.uniform(0, 2 * np.pi)
    return r * np.cos(angle), r * np.sin(angle)


def _center(grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    cu, cv = _polar_point(rng, 0.0, 0.12)
    return _ellipse(grid, cu, cv, rng.uniform(0.15, 0.35), rng), rng.uniform(0.75, 1.0)


def _donut(grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    cu, cv = _polar_point(rng, 0.0, 0.05)
    r = np.hypot(grid.u - cu, grid.v - cv)
    middle, half_width = rng.uniform(0.4, 0.6), rng.uniform(0.07, 0.13)
    return (np.abs(r - middle) <= half_width) & _arc(grid, rng, 0.7), rng.uniform(0.65, 0.95)


def _edge_loc(grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    cu, cv = _polar_point(rng, 0.85, 1.0)
    return _ellipse(grid, cu, cv, rng.uniform(0.18, 0.35), rng), rng.uniform(0.7, 1.0)


def _edge_ring(grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    width = max(rng.uniform(0.08, 0.16), 1.2 / grid.radius_in_dies)
    return (grid.r >= 1.0 - width) & _arc(grid, rng, 0.5), rng.uniform(0.7, 1.0)


def _loc(grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    cu, cv = _polar_point(rng, 0.35, 0.7)
    return _ellipse(grid, cu, cv, rng.uniform(0.1, 0.22), rng), rng.uniform(0.75, 1.0)


def _near_full(grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    return grid.wafer.copy(), rng.uniform(0.75, 0.98)


def _random(grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    return grid.wafer.copy(), rng.uniform(0.15, 0.4)


def _scratch(grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A thin straight or gently curved line (constant curvature) at a random angle and place."""
    start_u, start_v = _polar_point(rng, 0.0, 0.6)
    heading = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(0.9, 1.6)
    curvature = rng.uniform(-1.2, 1.2)
    step = 0.3 / grid.radius_in_dies  # a third of a die: no gaps in the rasterised line
    headings = heading + curvature * np.arange(0, length, step)
    path_u = start_u + np.cumsum(np.cos(headings) * step)
    path_v = start_v + np.cumsum(np.sin(headings) * step)
    size = grid.u.shape[0]
    columns = np.clip(np.rint(path_u * grid.radius_in_dies + (size - 1) / 2).astype(int), 0, size - 1)
    rows = np.clip(np.rint(path_v * grid.radius_in_dies + (size - 1) / 2).astype(int), 0, size - 1)
    line = np.zeros_like(grid.wafer)
    line[rows, columns] = True
    return line, rng.uniform(0.85, 1.0)


_PATTERNS: dict[str, Callable[[_Grid, np.random.Generator], tuple[np.ndarray, float]]] = {
    "center": _center,
    "donut": _donut,
    "edge-loc": _edge_loc,
    "edge-ring": _edge_ring,
    "loc": _loc,
    "near-full": _near_full,
    "random": _random,
    "scratch": _scratch,
}


def _defect_mask(grid: _Grid, class_name: str, rng: np.random.Generator) -> np.ndarray:
    """Failing dies of one pattern instance; redrawn until enough dies fail to show the pattern."""
    if class_name == "none":
        return np.zeros_like(grid.wafer)
    min_dies = max(3, round(MIN_DEFECT_FRACTION * grid.wafer.sum()))
    while True:
        region, density = _PATTERNS[class_name](grid, rng)
        mask = region & grid.wafer & (rng.random(grid.wafer.shape) < density)
        if mask.sum() >= min_dies:
            return mask


def make_wafer_maps(n_per_class: int, size: int = 32, *, rng: np.random.Generator) -> WaferMaps:
    """`n_per_class` maps of each of the 9 classes (balanced), size x size dies, in shuffled order."""
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    if size < MIN_SIZE:
        raise ValueError(f"wafer map size must be >= {MIN_SIZE}, got {size}")
    grid = _grid(size)
    count = n_per_class * len(WAFER_CLASSES)
    labels = np.repeat(np.arange(len(WAFER_CLASSES), dtype=np.int64), n_per_class)
    maps = np.empty((count, size, size), np.uint8)
    masks = np.empty((count, size, size), bool)
    for index, label in enumerate(labels):
        masks[index] = _defect_mask(grid, WAFER_CLASSES[label], rng)
        background = rng.random(grid.wafer.shape) < rng.uniform(0.0, MAX_BACKGROUND_FAILURE_RATE)
        failing = masks[index] | (background & grid.wafer)
        maps[index] = np.where(grid.wafer, np.where(failing, FAIL, PASS), OFF_WAFER)
    order = rng.permutation(count)
    return WaferMaps(maps=maps[order], labels=labels[order], masks=masks[order])


SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def wafer_splits(n_per_class: int = 200, size: int = 32, *, seed: int) -> dict[str, WaferMaps]:
    """Stratified train/val/test (70/15/15 of each class) of `make_wafer_maps`, from one seed."""
    rng = np.random.default_rng(seed)
    maps = make_wafer_maps(n_per_class, size, rng=rng)
    n_train = round(SPLIT_FRACTIONS["train"] * n_per_class)
    n_val = round(SPLIT_FRACTIONS["val"] * n_per_class)
    if min(n_train, n_val, n_per_class - n_train - n_val) < 1:
        raise ValueError(f"n_per_class={n_per_class} is too small for a train/val/test split")
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n_per_class)}
    # maps are already shuffled, so each class's first indices form a random sample of it.
    by_class = [np.flatnonzero(maps.labels == label) for label in range(len(WAFER_CLASSES))]
    splits = {}
    for name, (low, high) in bounds.items():
        indices = np.concatenate([members[low:high] for members in by_class])
        splits[name] = maps.subset(rng.permutation(indices))
    return splits
