"""Plain-JSON views of analysis results, for `--json` on the analysis commands.

Each view is the dataclass's fields plus the derived figures the text output prints
(separable ratio, FLOPs, the larger-axis RF), so a script never re-derives them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from cnnkit.analysis.conv_calculator import ConvReport
from cnnkit.analysis.layer_stack import StackRow
from cnnkit.analysis.receptive_field import Jump
from cnnkit.analysis.rf_growth import RFPoint
from cnnkit.analysis.summary import ModelSummary


def conv_report_json(report: ConvReport) -> dict[str, Any]:
    """The report's fields (spec nested) and its separable ratio."""
    return {**asdict(report), "separable_ratio": report.separable_ratio}


def stack_json(rows: tuple[StackRow, ...]) -> dict[str, Any]:
    """Per-layer kernel, stride, dilation, RF and jump, and the stack's final RF and jump."""
    return {
        "layers": [{**asdict(row.layer), "label": row.layer.label, "rf": row.rf, "jump": row.jump} for row in rows],
        "rf": rows[-1].rf,
        "jump": rows[-1].jump,
    }


def summary_json(model_summary: ModelSummary) -> dict[str, Any]:
    """Totals (MACs, FLOPs = 2 x MACs, parameters, activation bytes) and one entry per layer call."""
    fields = asdict(model_summary)
    rows = fields.pop("rows")
    for entry, row in zip(rows, model_summary.rows):
        jump_hw = None if row.jump_hw is None else [jump_number(j) for j in row.jump_hw]
        entry.update(rf=row.rf, jump=None if row.jump is None else jump_number(row.jump), jump_hw=jump_hw)
    return {
        **fields,
        "flops": model_summary.flops,
        "total_activation_bytes": model_summary.total_activation_bytes,
        "rows": rows,
    }


def rf_growth_json(points: tuple[RFPoint, ...]) -> list[dict[str, Any]]:
    """One entry per conv/pool call: depth, name, kind, RF and jump."""
    return [{**asdict(point), "jump": jump_number(point.jump)} for point in points]


def jump_number(jump: Jump) -> int | float:
    """A jump for JSON: whole ones as ints, a fractional one (after an enlarging adaptive pool) as a float."""
    return jump if isinstance(jump, int) else float(jump)  # the tracker makes whole jumps ints
