"""Receptive field and jump of a plain stack of windows given as text, e.g. "k7s2,k3s2,k3s1".

For a chain of convs and pools without a model: each layer is `k<kernel>` with optional
`s<stride>` and `d<dilation>` (defaults 1), and the figures follow the same recurrence as the
per-tensor tracker, `SpatialInfo.windowed` (r_l = r_{l-1} + (k_l - 1) d_l j_{l-1}, j_l = j_{l-1} s_l;
Araujo et al. 2019). Padding moves a window but does not widen it, so it has no say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cnnkit.analysis.receptive_field import SpatialInfo
from cnnkit.errors import CnnkitError

_LAYER = re.compile(r"k(?P<k>\d+)(?:s(?P<s>\d+))?(?:d(?P<d>\d+))?")


@dataclass(frozen=True)
class WindowLayer:
    """One square sliding window (conv or pool): kernel, stride and dilation."""

    kernel: int
    stride: int = 1
    dilation: int = 1

    @property
    def label(self) -> str:
        """The layer in the `--stack` syntax: k3s2, k3d4, k5."""
        return f"k{self.kernel}" + (f"s{self.stride}" if self.stride > 1 else "") + (
            f"d{self.dilation}" if self.dilation > 1 else ""
        )


@dataclass(frozen=True)
class StackRow:
    """Receptive field and jump (cumulative stride) in input pixels after `layer`."""

    layer: WindowLayer
    rf: int
    jump: int


def parse_stack(text: str) -> tuple[WindowLayer, ...]:
    """'k7s2,k3s2,k3s1' -> WindowLayers; a malformed entry is a CnnkitError naming --stack."""
    layers = []
    for item in (part.strip().lower() for part in text.split(",")):
        match = _LAYER.fullmatch(item)
        values = [int(v) for v in match.group("k", "s", "d") if v is not None] if match else []
        if not match or min(values) < 1:
            raise CnnkitError(
                f"--stack entry {item!r} is not k<kernel>[s<stride>][d<dilation>] with positive integers "
                f"(e.g. k7s2,k3s2,k3s1,k3d2)"
            )
        layers.append(WindowLayer(int(match["k"]), int(match["s"] or 1), int(match["d"] or 1)))
    return tuple(layers)


def stack_receptive_fields(layers: tuple[WindowLayer, ...]) -> tuple[StackRow, ...]:
    """Receptive field and jump after each layer of the stack, in order."""
    info = SpatialInfo(rf=(1, 1), jump=(1, 1), grid=(1, 1), axes=(2, 3))
    rows = []
    for layer in layers:
        info = info.windowed((layer.kernel,) * 2, (layer.stride,) * 2, (layer.dilation,) * 2, info.grid)
        rows.append(StackRow(layer, info.rf[0], info.jump[0]))
    return tuple(rows)


def format_stack(rows: tuple[StackRow, ...]) -> str:
    """One line per layer: its label, receptive field and jump."""
    lines = [f"{'layer':<8}{'kernel':>7}{'stride':>7}{'dilation':>9}{'RF':>6}{'jump':>6}"]
    for index, row in enumerate(rows, start=1):
        layer = row.layer
        lines.append(
            f"{index:<3}{layer.label:<5}{layer.kernel:>7}{layer.stride:>7}{layer.dilation:>9}{row.rf:>6}{row.jump:>6}"
        )
    lines.append(f"receptive field of the stack: {rows[-1].rf} pixels, jump {rows[-1].jump}")
    return "\n".join(lines)
