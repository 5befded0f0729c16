"""The 9 WM-811K failure patterns as per-die failure probabilities on one wafer's die grid.

Each pattern is a region with a soft edge (the failure probability ramps from the pattern's
density inside to 0 outside over a random width) and a density drawn per wafer, after the
pattern descriptions of Wu et al. 2015. Coordinates are normalised to the wafer radius, so a
pattern has the same shape on a 15x15 and a 200x200 die grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

# Where loc and scratch defects may sit: the whole wafer, or only its left (u < 0) or right half.
Placement = Literal["anywhere", "left", "right"]


@dataclass(frozen=True)
class Grid:
    """Die coordinates normalised to the wafer radius: u, v (x right, y down), r, theta; the
    `wafer` mask; `radius_in_dies` (the shorter semi-axis); `thickness` of a scratch in dies."""

    u: np.ndarray
    v: np.ndarray
    r: np.ndarray
    theta: np.ndarray
    wafer: np.ndarray
    radius_in_dies: float
    thickness: int


def make_grid(rows: int, cols: int, *, thickness: int = 1) -> Grid:
    """A rows x cols die grid whose wafer is the inscribed circle (an ellipse in die units)."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    u = (x - (cols - 1) / 2) / (cols / 2 - 0.5)
    v = (y - (rows - 1) / 2) / (rows / 2 - 0.5)
    r = np.hypot(u, v)
    return Grid(u=u, v=v, r=r, theta=np.arctan2(v, u), wafer=r <= 1.0,
                radius_in_dies=min(rows, cols) / 2 - 0.5, thickness=thickness)


def _soft(depth: np.ndarray, density: float, grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """Failure probability from the signed depth inside a region (> 0 inside, wafer radii): the
    density inside, ramping linearly to 0 across a soft edge of random width (at least one die)."""
    softness = max(rng.uniform(0.04, 0.15), 1.0 / grid.radius_in_dies)
    return density * np.clip(0.5 + depth / softness, 0.0, 1.0)


def _ellipse_depth(grid: Grid, cu: float, cv: float, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Approximate depth inside a randomly stretched, rotated ellipse of mean radius `radius`."""
    aspect, angle = rng.uniform(0.7, 1.4), rng.uniform(0, np.pi)
    du, dv = grid.u - cu, grid.v - cv
    along = du * np.cos(angle) + dv * np.sin(angle)
    across = -du * np.sin(angle) + dv * np.cos(angle)
    return (1.0 - np.hypot(along / (radius * aspect), across * aspect / radius)) * radius


def _arc_depth(grid: Grid, rng: np.random.Generator, min_fraction: float) -> np.ndarray:
    """Arc-length depth inside a random angular sector covering at least `min_fraction` of the circle."""
    span = 2 * np.pi * rng.uniform(min_fraction, 1.0)
    if span >= 2 * np.pi * 0.999:
        return np.full_like(grid.r, np.inf)
    angle = np.mod(grid.theta - rng.uniform(0, 2 * np.pi), 2 * np.pi)
    inside = np.minimum(angle, span - angle)
    outside = -np.minimum(angle - span, 2 * np.pi - angle)
    return np.where(angle <= span, inside, outside) * grid.r


def _polar_point(rng: np.random.Generator, r_low: float, r_high: float,
                 angles: tuple[float, float] = (0.0, 2 * np.pi)) -> tuple[float, float]:
    r, angle = rng.uniform(r_low, r_high), rng.uniform(*angles)
    return r * np.cos(angle), r * np.sin(angle)


def _half_angles(placement: Placement) -> tuple[float, float]:
    """Polar angles of a point well inside the placement's half (u < 0 left, u > 0 right)."""
    margin = 0.35
    if placement == "left":
        return np.pi / 2 + margin, 3 * np.pi / 2 - margin
    if placement == "right":
        return -np.pi / 2 + margin, np.pi / 2 - margin
    return 0.0, 2 * np.pi


def _center(grid: Grid, placement: Placement, rng: np.random.Generator) -> np.ndarray:
    cu, cv = _polar_point(rng, 0.0, 0.12)
    return _soft(_ellipse_depth(grid, cu, cv, rng.uniform(0.15, 0.35), rng), rng.uniform(0.6, 1.0), grid, rng)


def _donut(grid: Grid, placement: Placement, rng: np.random.Generator) -> np.ndarray:
    cu, cv = _polar_point(rng, 0.0, 0.05)
    r = np.hypot(grid.u - cu, grid.v - cv)
    middle, half_width = rng.uniform(0.4, 0.6), rng.uniform(0.07, 0.14)
    depth = np.minimum(half_width - np.abs(r - middle), _arc_depth(grid, rng, 0.7))
    return _soft(depth, rng.uniform(0.55, 0.95), grid, rng)


def _edge_loc(grid: Grid, placement: Placement, rng: np.random.Generator) -> np.ndarray:
    cu, cv = _polar_point(rng, 0.85, 1.0)
    return _soft(_ellipse_depth(grid, cu, cv, rng.uniform(0.18, 0.35), rng), rng.uniform(0.6, 1.0), grid, rng)


def _edge_ring(grid: Grid, placement: Placement, rng: np.random.Generator) -> np.ndarray:
    width = max(rng.uniform(0.08, 0.16), 1.2 / grid.radius_in_dies)
    depth = np.minimum(grid.r - (1.0 - width), _arc_depth(grid, rng, 0.5))
    return _soft(depth, rng.uniform(0.6, 1.0), grid, rng)


def _loc(grid: Grid, placement: Placement, rng: np.random.Generator) -> np.ndarray:
    cu, cv = _polar_point(rng, 0.35, 0.7, _half_angles(placement))
    return _soft(_ellipse_depth(grid, cu, cv, rng.uniform(0.1, 0.22), rng), rng.uniform(0.6, 1.0), grid, rng)


def _near_full(grid: Grid, placement: Placement, rng: np.random.Generator) -> np.ndarray:
    return np.full(grid.r.shape, rng.uniform(0.75, 0.98))


def _random(grid: Grid, placement: Placement, rng: np.random.Generator) -> np.ndarray:
    return np.full(grid.r.shape, rng.uniform(0.15, 0.4))


def _scratch(grid: Grid, placement: Placement, rng: np.random.Generator) -> np.ndarray:
    """A thin straight or gently curved line (constant curvature), `grid.thickness` dies wide."""
    start_u, start_v = _polar_point(rng, 0.2, 0.6, _half_angles(placement))
    heading = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(0.9, 1.6)
    curvature = rng.uniform(-1.2, 1.2)
    step = 0.3 / grid.radius_in_dies  # a third of a die: no gaps in the rasterised line
    headings = heading + curvature * np.arange(0, length, step)
    path_u = start_u + np.cumsum(np.cos(headings) * step)
    path_v = start_v + np.cumsum(np.sin(headings) * step)
    rows, cols = grid.u.shape
    column = np.rint(path_u * (cols / 2 - 0.5) + (cols - 1) / 2).astype(int)
    row = np.rint(path_v * (rows / 2 - 0.5) + (rows - 1) / 2).astype(int)
    line = np.zeros(grid.u.shape, bool)
    for d_row in range(grid.thickness):
        for d_col in range(grid.thickness):
            line[np.clip(row + d_row, 0, rows - 1), np.clip(column + d_col, 0, cols - 1)] = True
    return np.where(line, rng.uniform(0.8, 1.0), 0.0)


PATTERNS: dict[str, Callable[[Grid, Placement, np.random.Generator], np.ndarray]] = {
    "center": _center,
    "donut": _donut,
    "edge-loc": _edge_loc,
    "edge-ring": _edge_ring,
    "loc": _loc,
    "near-full": _near_full,
    "random": _random,
    "scratch": _scratch,
}
