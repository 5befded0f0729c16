"""How the theoretical receptive field grows with depth: one point per conv or pooling call.

Computed from a `ModelSummary` (so any zoo model, branches included); drawn by
`plots.plot_rf_growth` on a log scale, where a stride shows as a bend: with jump j every
later k x k layer adds (k - 1) * j pixels, so growth is linear in depth at stride 1 and
exponential once strides compound.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnkit.analysis.receptive_field import Jump
from cnnkit.analysis.summary import ModelSummary

# Leaf kinds whose window widens the receptive field (conv and pooling layers of torch and timm).
WINDOW_KINDS = ("Conv", "Pool")


@dataclass(frozen=True)
class RFPoint:
    """The receptive field and jump of the output of the `depth`-th windowed layer call."""

    depth: int
    name: str
    kind: str
    rf: int
    jump: Jump


def rf_growth(model_summary: ModelSummary) -> tuple[RFPoint, ...]:
    """Receptive field after each conv/pool call in execution order (depth counts from 1)."""
    rows = [
        row
        for row in model_summary.rows
        if row.leaf and row.rf is not None and row.jump is not None and any(kind in row.kind for kind in WINDOW_KINDS)
    ]
    return tuple(
        RFPoint(depth=index, name=row.name, kind=row.kind, rf=row.rf, jump=row.jump)  # type: ignore[arg-type]
        for index, row in enumerate(rows, start=1)
    )


def format_rf_growth(points: tuple[RFPoint, ...]) -> str:
    """One line per windowed layer: depth, name (kind), receptive field and jump."""
    width = max((len(f"{p.name} ({p.kind})") for p in points), default=5)
    lines = [f"{'depth':>5}  {'layer':<{width}}  {'RF':>5}  {'jump':>5}"]
    lines += [f"{p.depth:>5}  {f'{p.name} ({p.kind})':<{width}}  {p.rf:>5}  {str(p.jump):>5}" for p in points]
    return "\n".join(lines)
