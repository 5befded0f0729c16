"""Plain-text views of a run's results (computation lives elsewhere; this only formats)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cnnkit.train.run_summary import RunSummary


def format_metrics(summary: RunSummary, run_dir: Path) -> str:
    """Final metrics, best epoch, test accuracy and confusion table of a finished run."""
    lines = [f"run: {run_dir}  (model {summary.model_name}, {summary.epochs_run} epochs, "
             f"best {summary.monitor} {summary.best_metric:.4f} at epoch {(summary.best_epoch or 0) + 1})"]
    lines.append("final: " + "  ".join(f"{k} {v:.4f}" for k, v in summary.final.items()))
    if summary.test is not None and summary.test_confusion is not None:
        lines.append("test:  " + "  ".join(f"{k} {v:.4f}" for k, v in summary.test.items()))
        lines.append(format_confusion(summary.test_confusion, summary.class_names))
    return "\n".join(lines)


def format_confusion(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> str:
    """Rows = true class, columns = predicted class, with per-class recall at the right."""
    width = max(5, *(len(n) for n in class_names))
    header = " " * (width + 2) + " ".join(f"{n[:5]:>5}" for n in class_names) + "  recall"
    rows = [header]
    for name, row in zip(class_names, confusion):
        total = sum(row)
        recall = f"{100 * row[class_names.index(name)] / total:5.1f}%" if total else "    -"
        rows.append(f"{name:>{width}}  " + " ".join(f"{v:>5}" for v in row) + f"  {recall}")
    return "\n".join(rows)
