"""Theoretical receptive field of every tensor in a forward pass, for any graph of modules.

Each spatial tensor carries a `SpatialInfo`: its receptive field r and jump j (cumulative stride)
per axis (height, width), measured in input pixels. Windowed ops follow
r_l = r_{l-1} + (k_l - 1) * d_l * j_{l-1} and j_l = j_{l-1} * s_l (Araujo et al. 2019,
"Computing Receptive Fields of Convolutional Neural Networks"); a merge (add, mul, cat, ...)
takes the max over its inputs. The propagation runs as a torch function mode, so residual,
concatenating and squeeze-excitation graphs need no special cases. After an adaptive pool whose
windows are uneven or repeat cells (O > I, VGG's 7x7 pool on a 1x1 map) cells are no longer evenly
spaced and the formula overstates r: such axes carry each cell's exact pixel interval instead
(`exact_windows`), and a jump below one cell becomes a Fraction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from cnnkit.analysis.exact_windows import (
    Cells,
    adaptive_cells,
    broadcast,
    resized,
    uniform_cells,
    union,
    widest,
    window_cells,
)

Pair = tuple[int, int]
Jump = int | Fraction  # input pixels between neighbouring cells: a Fraction after an enlarging adaptive pool


@dataclass(frozen=True)
class SpatialInfo:
    """Receptive field `rf` and jump of a tensor per spatial axis (h, w), in input pixels.

    `grid` is the (h, w) size of the feature map these figures describe, and `axes` the tensor
    dimensions that hold it (None once a reshape has merged them, e.g. after flatten). `offset` is
    the first input pixel seen by cell 0. `cells` is None on an axis whose cells are evenly spaced
    (the formula holds); after an adaptive pool with uneven or repeated windows it holds each cell's
    exact pixel interval (`exact_windows`), and `jump` is then the mean spacing I / O (a Fraction
    when below or between whole pixels).
    """

    rf: Pair
    jump: tuple[Jump, Jump]
    grid: Pair
    axes: Pair | None
    offset: Pair = (0, 0)
    cells: tuple[Cells | None, Cells | None] = (None, None)

    @classmethod
    def of_input(cls, image: torch.Tensor) -> SpatialInfo:
        """The input image (N, C, H, W): every pixel sees itself, neighbours are 1 pixel apart."""
        return cls(rf=(1, 1), jump=(1, 1), grid=_pair(image.shape[-2:]), axes=(image.dim() - 2, image.dim() - 1))

    def axis_cells(self, axis: int) -> Cells:
        """The pixel interval of every cell along `axis` (0: h, 1: w), evenly spaced ones included."""
        cells = self.cells[axis]
        if cells is not None:
            return cells
        return uniform_cells(self.rf[axis], int(self.jump[axis]), self.offset[axis], self.grid[axis])

    def _with_cells(self, cells: list[Cells | None], jump: list[Jump], grid: Pair, axes: Pair | None) -> SpatialInfo:
        # Exact axes take their rf from their cells; evenly spaced ones were computed by the caller.
        rf = tuple(self.rf[a] if cells[a] is None else widest(cells[a]) for a in range(2))  # type: ignore[arg-type]
        exact = tuple(cells)
        return replace(self, rf=rf, jump=tuple(jump), grid=grid, axes=axes, cells=exact)  # type: ignore[arg-type]

    def windowed(self, kernel: Pair, stride: Pair, dilation: Pair, grid: Pair, padding: Pair = (0, 0)) -> SpatialInfo:
        """After a sliding window (conv or pool) with this kernel, stride, dilation and padding."""
        rf, jump, offset, cells = [], [], [], []
        for a in range(2):
            rf.append(self.rf[a] + (kernel[a] - 1) * dilation[a] * self.jump[a])
            jump.append(_exact(self.jump[a] * stride[a]))
            exact = self.cells[a]
            offset.append(self.offset[a] - padding[a] * int(self.jump[a]) if exact is None else self.offset[a])
            cells.append(
                None if exact is None else window_cells(exact, kernel[a], stride[a], dilation[a], padding[a], grid[a])
            )
        info = replace(self, rf=tuple(rf), offset=tuple(offset))  # type: ignore[arg-type]
        return info._with_cells(cells, jump, grid, self.axes)

    def adaptive(self, grid: Pair) -> SpatialInfo:
        """After an adaptive pool to `grid`: output i pools floor(i * I / O) ... ceil((i + 1) * I / O) - 1.

        O dividing I is a pool of kernel = stride = I / O; otherwise (uneven windows, or O > I where
        windows repeat one cell) the cells get exact intervals and the jump is the Fraction I / O.
        """
        if grid == (1, 1):
            return self.globalised(axes=self.axes)
        even = [self.grid[a] % grid[a] == 0 and self.cells[a] is None for a in range(2)]
        step = tuple(self.grid[a] // grid[a] if even[a] else 1 for a in range(2))
        info = self.windowed(step, step, (1, 1), grid)  # type: ignore[arg-type]
        cells = [None if even[a] else adaptive_cells(self.axis_cells(a), grid[a]) for a in range(2)]
        jump = [info.jump[a] if even[a] else _exact(self.jump[a] * Fraction(self.grid[a], grid[a])) for a in range(2)]
        return info._with_cells(cells, jump, grid, self.axes)

    def globalised(self, *, axes: Pair | None) -> SpatialInfo:
        """After an op that mixes the whole feature map (global pool, flatten + linear, spatial mean).

        It acts as one window of kernel = stride = grid, so r grows by (grid - 1) * j and every
        output unit sees the whole input.
        """
        return replace(self.windowed(self.grid, self.grid, (1, 1), (1, 1)), axes=axes)

    def regridded(self, grid: Pair) -> SpatialInfo:
        """The same windows on a padded, cropped or resized map of `grid` cells."""
        cells = [None if c is None else resized(c, size) for c, size in zip(self.cells, grid)]
        return self._with_cells(cells, list(self.jump), grid, self.axes)


def _exact(value: Fraction | int) -> Jump:
    """A whole jump as an int, a fractional one as a Fraction."""
    return int(value) if Fraction(value).denominator == 1 else Fraction(value)


def merged(infos: Sequence[SpatialInfo]) -> SpatialInfo:
    """The receptive field of a merge (add, mul, cat, ...) is the max over its inputs, per axis.

    Grid, jump and axes come from the input with the largest spatial grid: a broadcast 1x1
    input (a squeeze-excitation scale) widens the receptive field but does not change the grid.
    On an axis with exact cells, each cell sees the union of what its inputs' cells see.
    """
    main = max(infos, key=lambda info: (info.axes is not None, info.grid[0] * info.grid[1]))
    info = replace(main, rf=tuple(max(info.rf[a] for info in infos) for a in range(2)))  # type: ignore[arg-type]
    cells: list[Cells | None] = []
    for a in range(2):
        if all(other.cells[a] is None for other in infos):
            cells.append(None)
            continue
        parts = [broadcast(other.axis_cells(a), main.grid[a]) for other in infos]
        cells.append(tuple(union(part[u] for part in parts if u < len(part)) for u in range(main.grid[a])))
    return info._with_cells(cells, list(main.jump), main.grid, main.axes)


def _pair(value: Any) -> Pair:
    if isinstance(value, int):
        return (value, value)
    values = tuple(int(v) for v in value)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _argument(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _conv(info: SpatialInfo, args: tuple, kwargs: dict, out: torch.Tensor) -> SpatialInfo:
    # torch.conv2d(input, weight, bias, stride, padding, dilation, groups): padding moves the
    # window but does not widen it, so it does not enter the formula (only the offsets).
    weight = _argument(args, kwargs, 1, "weight", None)
    kernel = _pair(weight.shape[-2:])
    stride = _pair(_argument(args, kwargs, 3, "stride", 1))
    dilation = _pair(_argument(args, kwargs, 5, "dilation", 1))
    padding = _argument(args, kwargs, 4, "padding", 0)
    if isinstance(padding, str):  # 'valid', or 'same' (PyTorch puts the odd cell after)
        padding = (0, 0) if padding == "valid" else tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    return info.windowed(kernel, stride, dilation, _pair(out.shape[-2:]), _pair(padding))


def _pool(info: SpatialInfo, args: tuple, kwargs: dict, out: Any, *, dilation: Pair) -> SpatialInfo:
    # F.max_pool2d / F.avg_pool2d (input, kernel_size, stride=kernel_size, padding, ...).
    out = out[0] if isinstance(out, tuple) else out
    kernel = _pair(_argument(args, kwargs, 1, "kernel_size", 1))
    stride_arg = _argument(args, kwargs, 2, "stride", None)
    stride = kernel if stride_arg is None or len(_as_list(stride_arg)) == 0 else _pair(stride_arg)
    padding = _pair(_argument(args, kwargs, 3, "padding", 0))
    return info.windowed(kernel, stride, dilation, _pair(out.shape[-2:]), padding)


def _as_list(value: Any) -> list:
    return [value] if isinstance(value, int) else list(value)


def _max_pool(info: SpatialInfo, args: tuple, kwargs: dict, out: Any) -> SpatialInfo:
    # max_pool2d(input, kernel_size, stride, padding, dilation, ...)
    return _pool(info, args, kwargs, out, dilation=_pair(_argument(args, kwargs, 4, "dilation", 1)))


def _avg_pool(info: SpatialInfo, args: tuple, kwargs: dict, out: Any) -> SpatialInfo:
    return _pool(info, args, kwargs, out, dilation=(1, 1))


def _adaptive_pool(info: SpatialInfo, args: tuple, kwargs: dict, out: Any) -> SpatialInfo:
    out = out[0] if isinstance(out, tuple) else out
    return info.adaptive(_pair(out.shape[-2:]))


# Windowed ops, keyed by the function name a torch function mode sees (torch.conv2d,
# torch.nn.functional.max_pool2d, ...); each maps the input's info to the output's.
WindowRule = Callable[[SpatialInfo, tuple, dict, Any], SpatialInfo]
WINDOW_RULES: dict[str, WindowRule] = {
    "conv2d": _conv,
    "max_pool2d": _max_pool,
    "_max_pool2d": _max_pool,
    "max_pool2d_with_indices": _max_pool,
    "avg_pool2d": _avg_pool,
    "adaptive_avg_pool2d": _adaptive_pool,
    "adaptive_max_pool2d": _adaptive_pool,
    "_adaptive_max_pool2d": _adaptive_pool,
    "adaptive_max_pool2d_with_indices": _adaptive_pool,
}

# Ops that mix along the contracted (last) dimension: on a merged tensor they mix all positions.
CONTRACTIONS = frozenset({"linear", "matmul", "mm", "bmm", "addmm", "einsum", "__matmul__", "bilinear"})
PERMUTATIONS = frozenset({"permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "t"})


def _locate_grid(shape: Sequence[int], grid: Pair, trailing: int) -> Pair | None:
    # Find the two adjacent dims holding the grid with the same number of elements after them.
    for dim in range(len(shape) - 1):
        if (shape[dim], shape[dim + 1]) == grid and math.prod(shape[dim + 2 :]) == trailing:
            return (dim, dim + 1)
    return None


def _permutation_order(name: str, args: tuple, kwargs: dict, ndim: int) -> list[int] | None:
    order = list(range(ndim))
    if name == "permute":
        dims = kwargs["dims"] if "dims" in kwargs else args[1:]
        if len(dims) == 1 and not isinstance(dims[0], int):
            dims = dims[0]
        return [int(d) % ndim for d in dims]
    if name == "t":
        return order[::-1]
    if name in {"transpose", "swapaxes", "swapdims"}:
        first, second = (int(d) % ndim for d in args[1:3])
        order[first], order[second] = order[second], order[first]
        return order
    return None


def _grid_size(pair: tuple[torch.Tensor, SpatialInfo]) -> tuple[bool, int, int]:
    tensor, info = pair
    return (info.axes is not None, tensor.dim(), info.grid[0] * info.grid[1])


def propagate(
    func: Callable, args: tuple, kwargs: dict, out: Any, inputs: list[tuple[torch.Tensor, SpatialInfo]]
) -> SpatialInfo | None:
    """The output info of `func(*args, **kwargs) = out`, given the infos of its tensor inputs.

    Rules, in order: windowed ops (conv, pools); on a merged (flattened) tensor, anything that
    changes its size or contracts it mixes all positions; permutations move the axes; a
    contraction over a spatial axis, or a reduction of the grid to 1x1, is global; reshapes that
    keep the grid find its new axes; other ops keep the merge of their inputs.
    """
    name = getattr(func, "__name__", "")
    outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
    if not outputs or not inputs:
        return None
    result = outputs[0]
    source_tensor, source = max(inputs, key=_grid_size)
    info = merged([info for _, info in inputs])
    if source.axes is not None and name in WINDOW_RULES and source_tensor.dim() == 4 and result.dim() == 4:
        return WINDOW_RULES[name](info, args, kwargs, out)
    if source.axes is None:
        mixes = name in CONTRACTIONS or result.numel() != source_tensor.numel()
        return info.globalised(axes=None) if mixes else info
    if name in PERMUTATIONS:
        order = _permutation_order(name, args, kwargs, source_tensor.dim())
        axes = None if order is None else (order.index(source.axes[0]), order.index(source.axes[1]))
        return replace(info, axes=axes)
    if name in CONTRACTIONS and source_tensor.dim() - 1 in source.axes:
        return info.globalised(axes=None)
    kept = result.dim() == source_tensor.dim() and all(
        result.shape[a] == source_tensor.shape[a] for a in source.axes
    )
    if kept:
        return info
    trailing = math.prod(source_tensor.shape[source.axes[1] + 1 :])
    axes = _locate_grid(result.shape, source.grid, trailing)
    if axes is not None:
        return replace(info, axes=axes)
    if result.dim() == source_tensor.dim():
        spatial = (result.shape[source.axes[0]], result.shape[source.axes[1]])
        if spatial == (1, 1):
            return info.globalised(axes=source.axes)
        # Padding, cropping and resizing move the grid but not the window: keep r and j.
        return info.regridded(_pair(spatial))
    if result.numel() == source_tensor.numel():
        return replace(info, axes=None)
    return info.globalised(axes=None)


class ReceptiveFieldMode(TorchFunctionMode):
    """Tags every tensor produced in the forward pass with its `SpatialInfo` (see `infos`)."""

    def __init__(self) -> None:
        super().__init__()
        self.infos: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def track_input(self, image: torch.Tensor) -> None:
        """Mark `image` (N, C, H, W) as the network input; other inputs have no spatial grid."""
        if image.dim() == 4:
            self.infos[image] = SpatialInfo.of_input(image)

    def info(self, tensor: torch.Tensor) -> SpatialInfo | None:
        """The info of `tensor`, or None if it does not derive from the input."""
        return self.infos.get(tensor)

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [
            (t, self.infos[t])
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and t in self.infos
        ]
        if inputs:
            info = propagate(func, args, kwargs, out, inputs)
            if info is not None:
                # In-place ops (x += y) return their input: the merge replaces its old info.
                for tensor in tree_flatten(out)[0]:
                    if isinstance(tensor, torch.Tensor):
                        self.infos[tensor] = info
        if getattr(func, "__name__", "") == "__setitem__" and len(inputs) > 1:
            self.infos[args[0]] = merged([info for _, info in inputs])
        return out
