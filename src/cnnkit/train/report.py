"""Plain-text views of a run's results (computation lives elsewhere; this only formats)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from cnnkit.train.run_summary import RunSummary


def format_metric(name: str, value: float) -> str:
    """One metric as every text output spells it: top-k accuracies in percent (`val_top1 57.52%`),
    the learning rate to 3 significant digits (`lr 1.25e-05`, not 0.0000), anything else to 4
    decimals (`val_loss 0.6637`); JSON and CSV keep the fractions."""
    if "top" in name:
        return f"{100 * value:.2f}%"
    return f"{value:.3g}" if name == "lr" else f"{value:.4f}"


def format_metrics_line(metrics: Mapping[str, float]) -> str:
    """`train_loss 0.6753  train_top1 60.27%  ...`: metrics as `format_metric` spells them."""
    return "  ".join(f"{name} {format_metric(name, value)}" for name, value in metrics.items())


def best_epoch_text(summary: RunSummary) -> str:
    """Where the best weights come from, counted from 1: `epoch 3`, or for a fine-tuning (whose
    best_epoch is within its last phase) `phase 2 epoch 1`."""
    where = f"epoch {(summary.best_epoch or 0) + 1}"
    return f"phase {len(summary.phases)} {where}" if summary.phases else where


def format_metrics(summary: RunSummary, run_dir: Path) -> str:
    """Final metrics, best epoch, test accuracy and confusion table of a finished run (of a
    fine-tuning: the epochs of each phase, their total, and the last phase's best epoch)."""
    batch = "" if summary.effective_batch_size is None else f"effective batch {summary.effective_batch_size}, "
    lines = [f"run: {run_dir}  (model {summary.model_name}, {summary.epochs_run} epochs, {batch}"
             f"best {summary.monitor} {format_metric(summary.monitor, summary.best_metric)} "
             f"at {best_epoch_text(summary)})"]
    if summary.phases:
        lines.append(format_phases(summary.phases, summary.epochs_run))
    lines.append("final: " + format_metrics_line(summary.final))
    if summary.test is not None and summary.test_confusion is not None:
        lines.append("test:  " + format_metrics_line(summary.test))
        lines.append(format_confusion(summary.test_confusion, summary.class_names))
    return "\n".join(lines)


def format_phases(phases: Sequence[dict], total_epochs: int) -> str:
    """`phases: 1/3 head 5 epochs @ 0.001, 2/3 layer3+layer4 10 epochs @ 0.0001, ...; total 20 epochs`."""
    items = [f"{i}/{len(phases)} {p['trainable']} {p.get('epochs_run', p['epochs'])} epochs"
             + (f" @ {p['lr']:.3g}" if p.get("lr") is not None else "")
             for i, p in enumerate(phases, start=1)]
    return "phases: " + ", ".join(items) + f"; total {total_epochs} epochs"


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
