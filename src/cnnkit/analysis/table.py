"""Text rendering of a `ModelSummary`: a torchinfo-like table with totals in human units."""

from __future__ import annotations

from cnnkit.analysis.summary import LayerRow, ModelSummary

COLUMNS = ("Layer (kind)", "Output shape", "Params", "MACs", "RF", "Jump", "Memory")


def human_count(value: float) -> str:
    """1234 -> '1.23K', 4_089_184_256 -> '4.09G' (decimal units, as MACs and params are quoted)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:g}"


def human_bytes(value: float) -> str:
    """Binary units for memory: 3211264 -> '3.06 MiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{int(value)} B"


def _cells(row: LayerRow) -> tuple[str, ...]:
    return (
        f"{row.name} ({row.kind})",
        "x".join(str(s) for s in row.output_shape),
        f"{row.params:,}" if row.params else "-",
        human_count(row.macs) if row.macs else "-",
        "-" if row.rf is None else str(row.rf),
        "-" if row.jump is None else str(row.jump),
        human_bytes(row.activation_bytes),
    )


def format_summary(summary: ModelSummary) -> str:
    """The summary as an aligned table, one line per leaf call, totals at the bottom."""
    table = [COLUMNS, *(_cells(row) for row in summary.rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))

    def render(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:]))])

    lines = [rule, render(COLUMNS), rule, *(render(cells) for cells in table[1:]), rule]
    lines += [
        f"Input shape: {'x'.join(str(s) for s in summary.input_shape)}",
        f"Total params: {summary.total_params:,} ({human_count(summary.total_params)})",
        f"Trainable params: {summary.trainable_params:,} ({human_count(summary.trainable_params)})",
        f"Total MACs: {summary.total_macs:,} ({human_count(summary.total_macs)}; conv, linear, matmul)",
        f"FLOPs (2 x MACs): {human_count(summary.flops)}",
        f"Activation memory (sum of layer outputs): {human_bytes(summary.total_activation_bytes)}",
    ]
    if summary.output_rf_hw is not None:
        lines.append(f"Output receptive field (h x w): {summary.output_rf_hw[0]} x {summary.output_rf_hw[1]} pixels")
    if summary.uncosted:
        lines.append(f"Uncosted ops (MACs not counted): {', '.join(summary.uncosted)}")
    return "\n".join(lines)
