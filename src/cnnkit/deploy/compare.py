"""Which backbone should I have used: finished runs side by side (size, cost, accuracy, speed) and
the accuracy-latency Pareto front (a model is on it when no other is both more accurate and faster)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnkit.analysis.summary import summary as analyse
from cnnkit.data.pipeline import eval_pipeline
from cnnkit.deploy.from_run import SourceRun
from cnnkit.deploy.latency import Latency, torch_latency
from cnnkit.train.evaluate import evaluate_model, ordered_loader
from cnnkit.train.preprocessing import batch_stage


@dataclass(frozen=True)
class CompareRow:
    """One run's figures; `latency` per backend name ("torch" here)."""

    model: str
    run_dir: str
    params: int
    macs: int
    test_top1: float
    macro_f1: float
    size_bytes: int
    latency: dict[str, Latency] = field(default_factory=dict)


def macro_f1(confusion: torch.Tensor) -> float:
    """Mean over classes of F1 = 2 TP / (2 TP + FP + FN), from a (true x predicted) confusion;
    classes absent from both truth and predictions are left out."""
    confusion = confusion.double()
    tp = confusion.diagonal()
    denominator = 2 * tp + (confusion.sum(0) - tp) + (confusion.sum(1) - tp)
    present = denominator > 0
    return float((2 * tp[present] / denominator[present]).mean()) if bool(present.any()) else float("nan")


def pareto_front(accuracy: Sequence[float], latency: Sequence[float]) -> list[bool]:
    """For each point, whether no other point is at least as accurate and at least as fast and
    strictly better in one of the two."""
    points = list(zip(accuracy, latency))
    return [not any(a2 >= a and l2 <= l and (a2 > a or l2 < l) for a2, l2 in points) for a, l in points]


@torch.no_grad()
def test_metrics(source: SourceRun, *, device: torch.device, batch_size: int = 64) -> tuple[float, float]:
    """(top-1, macro-F1) of the run's model on its test split (the whole data when it has none)."""
    split = "test" if "test" in source.data.splits else next(iter(source.data.splits))
    evaluation = eval_pipeline(source.model.default_cfg)
    classes = len(source.data.class_names)
    loader = ordered_loader(source.data.splits[split], evaluation.sample, batch_size=batch_size,
                            seed=source.config.seed, device=device,
                            batch_transform=batch_stage(evaluation, None, classes), channels_last=True)
    meter = evaluate_model(source.model.to(device), loader, num_classes=classes, device=device)
    return meter.compute()["top1"], macro_f1(meter.confusion)


def compare_row(source: SourceRun, *, device: torch.device, latency_budget_s: float = 3.0) -> CompareRow:
    """Measure one finished run (the model is evaluated and timed on `device`)."""
    model = source.model
    input_size = tuple(model.default_cfg.input_size)
    top1, f1 = test_metrics(source, device=device)
    costs = analyse(model, input_size)
    weights = source.path / "best.safetensors"
    return CompareRow(
        model=source.summary.model_name, run_dir=str(source.path),
        params=sum(p.numel() for p in model.parameters()), macs=costs.total_macs,
        test_top1=top1, macro_f1=f1, size_bytes=weights.stat().st_size,
        latency={"torch": torch_latency(model, input_size, device=device, budget_s=latency_budget_s)},
    )


def _columns(rows: Sequence[CompareRow]) -> list[str]:
    backends = sorted({b for row in rows for b in row.latency})
    columns = ["model", "params", "macs", "test_top1", "macro_f1"]
    for backend in backends:
        columns += [f"latency_p50_ms_b1_{backend}", f"images_per_s_b32_{backend}"]
    return columns + ["size_bytes", "pareto", "run_dir"]


def _values(row: CompareRow, on_front: bool) -> dict[str, object]:
    values: dict[str, object] = {"model": row.model, "params": row.params, "macs": row.macs,
                                 "test_top1": round(row.test_top1, 6), "macro_f1": round(row.macro_f1, 6),
                                 "size_bytes": row.size_bytes, "pareto": int(on_front), "run_dir": row.run_dir}
    for backend, latency in row.latency.items():
        values[f"latency_p50_ms_b1_{backend}"] = round(latency.p50_ms_batch1, 4)
        values[f"images_per_s_b32_{backend}"] = round(latency.images_per_s_batch32, 2)
    return values


def front_of(rows: Sequence[CompareRow], backend: str = "torch") -> list[bool]:
    return pareto_front([r.test_top1 for r in rows], [r.latency[backend].p50_ms_batch1 for r in rows])


def write_compare_csv(rows: Sequence[CompareRow], path: Path) -> None:
    front = front_of(rows)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_columns(rows))
        writer.writeheader()
        writer.writerows(_values(row, on) for row, on in zip(rows, front))


def format_compare(rows: Sequence[CompareRow]) -> str:
    """The table, Pareto-front models starred (accuracy against torch batch-1 latency)."""
    front = front_of(rows)
    lines = [f"  {'model':<18} {'params':>10} {'MACs':>12} {'top-1':>7} {'macro-F1':>8} {'p50 b1 ms':>9} "
             f"{'img/s b32':>9} {'size MB':>8}"]
    for row, on in zip(rows, front):
        latency = row.latency["torch"]
        lines.append(f"{'*' if on else ' '} {row.model:<18} {row.params:>10,} {row.macs:>12,} "
                     f"{100 * row.test_top1:6.2f}% {row.macro_f1:8.4f} {latency.p50_ms_batch1:9.2f} "
                     f"{latency.images_per_s_batch32:9.1f} {row.size_bytes / 1e6:8.2f}")
    lines.append("models marked * are on the accuracy-latency Pareto front (torch eager, batch 1)")
    return "\n".join(lines)


def plot_pareto(rows: Sequence[CompareRow], path: Path) -> None:
    """pareto.png: test top-1 against batch-1 latency, the front joined and its models filled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = front_of(rows)
    latency = [r.latency["torch"].p50_ms_batch1 for r in rows]
    accuracy = [100 * r.test_top1 for r in rows]
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for x, y, on, row in zip(latency, accuracy, front, rows):
        axes.scatter([x], [y], s=60, color="tab:red" if on else "white", edgecolors="tab:red" if on else "grey")
        axes.annotate(row.model, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ordered = sorted((x, y) for x, y, on in zip(latency, accuracy, front) if on)
    axes.plot([p[0] for p in ordered], [p[1] for p in ordered], color="tab:red", linestyle="--", label="Pareto front")
    axes.set_xlabel("latency p50, batch 1 (ms, torch eager)")
    axes.set_ylabel("test top-1 (%)")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
