"""Exact input-pixel interval of every cell of a feature map along one axis, for maps whose cells
are not evenly spaced: after an adaptive pool that enlarges the map (O > I: windows repeat or
overlap, the jump I / O is below one cell) or whose windows are uneven (O does not divide I).

There the rule r_l = r_{l-1} + (k_l - 1) d_l j_{l-1} overstates the receptive field (it assumes
neighbouring cells see inputs j apart), so such maps carry each cell's interval instead. Cells of
padding see nothing (None), as a gradient would show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Interval = tuple[int, int]  # first and last input pixel a cell sees, inclusive
Cells = tuple[Interval | None, ...]  # one entry per cell of the map along the axis


def uniform_cells(rf: int, jump: int, offset: int, size: int) -> Cells:
    """The cells of an evenly spaced map: cell x sees pixels x * jump + offset ... + rf - 1."""
    return tuple((x * jump + offset, x * jump + offset + rf - 1) for x in range(size))


def union(intervals: Iterable[Interval | None]) -> Interval | None:
    """The smallest interval holding all of `intervals` (None when none sees anything)."""
    seen = [interval for interval in intervals if interval is not None]
    if not seen:
        return None
    return (min(lo for lo, _ in seen), max(hi for _, hi in seen))


def widest(cells: Cells) -> int:
    """The receptive field of the map: the widest interval of its cells, in input pixels."""
    return max((hi - lo + 1 for lo, hi in (c for c in cells if c is not None)), default=0)


def _cell(cells: Cells, index: int) -> Interval | None:
    return cells[index] if 0 <= index < len(cells) else None


def window_cells(cells: Cells, kernel: int, stride: int, dilation: int, padding: int, size_out: int) -> Cells:
    """After a sliding window: output u pools input cells u * stride - padding + t * dilation, t < kernel."""
    return tuple(
        union(_cell(cells, u * stride - padding + t * dilation) for t in range(kernel)) for u in range(size_out)
    )


def adaptive_window(size_in: int, size_out: int, index: int) -> range:
    """Input cells of adaptive-pool output `index`: floor(i * I / O) ... ceil((i + 1) * I / O) - 1
    (PyTorch's start/end index rule)."""
    return range(index * size_in // size_out, -(-(index + 1) * size_in // size_out))


def adaptive_cells(cells: Cells, size_out: int) -> Cells:
    """After an adaptive pool of `cells` (len I) to `size_out` (O) cells, O > I included."""
    return tuple(
        union(cells[x] for x in adaptive_window(len(cells), size_out, i)) for i in range(size_out)
    )


def resized(cells: Cells, size: int) -> Cells:
    """A map padded or cropped evenly on both sides to `size` cells (F.pad, centre crops)."""
    before = (size - len(cells)) // 2
    return tuple(_cell(cells, u - before) for u in range(size))


def broadcast(cells: Cells, size: int) -> Sequence[Interval | None]:
    """`cells` as seen by a merge over `size` cells: a single cell broadcasts to all of them."""
    return cells * size if len(cells) == 1 else cells
