"""Which backbone should I have used: finished runs side by side (size, cost, accuracy, speed) and
the accuracy-latency Pareto front (a model is on it when no other is both more accurate and faster)."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnkit.analysis.summary import summary as analyse
from cnnkit.data.pipeline import eval_pipeline
from cnnkit.deploy.compare_backends import BackendFigures, measure_backends
from cnnkit.deploy.from_run import SourceRun
from cnnkit.deploy.run_images import ImageBatches, split_batches, test_split
from cnnkit.train.evaluate import evaluate_model, ordered_loader
from cnnkit.train.preprocessing import batch_stage


@dataclass(frozen=True)
class CompareRow:
    """One run's figures; `backends` per backend name (torch, onnx, int8) in the order chosen; the
    accuracies are on `split` (test, else val: `test_split`)."""

    model: str
    run_dir: str
    params: int
    macs: int
    test_top1: float
    macro_f1: float
    backends: dict[str, BackendFigures] = field(default_factory=dict)
    split: str = "test"


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
def test_metrics(source: SourceRun, *, device: torch.device, batch_size: int = 64,
                 images: ImageBatches | None = None) -> tuple[float, float]:
    """(top-1, macro-F1) of the run's model on its test split (`test_split`: val when it has none):
    on `images` when that split is already decoded (`split_batches`), else streamed from disk."""
    classes = len(source.data.class_names)
    if images is not None:
        loader: Iterable[tuple[torch.Tensor, torch.Tensor]] = (
            (batch.contiguous(memory_format=torch.channels_last), labels) for batch, labels in images.labelled())
    else:
        evaluation = eval_pipeline(source.model.default_cfg)
        dataset = source.data.splits[test_split(source)].with_decode_hint(evaluation.decode_hint)
        loader = ordered_loader(dataset, evaluation.sample, batch_size=batch_size, seed=source.config.seed,
                                device=device, batch_transform=batch_stage(evaluation, None, classes),
                                channels_last=True)
    meter = evaluate_model(source.model.to(device), loader, num_classes=classes, device=device)
    return meter.compute()["top1"], macro_f1(meter.confusion)


def compare_row(source: SourceRun, *, device: torch.device, backends: Sequence[str], workdir: Path,
                calibration_size: int = 256, latency_budget_s: float = 3.0) -> CompareRow:
    """Measure one finished run: accuracy on `device`, then every backend (exports under `workdir`).
    With an ONNX backend the test split is decoded once, and torch and every backend measured on it."""
    model, seed = source.model, source.config.seed
    test = split_batches(source, test_split(source), seed=seed) if set(backends) - {"torch"} else None
    top1, f1 = test_metrics(source, device=device, images=test)
    costs = analyse(model, tuple(model.default_cfg.input_size))
    figures = measure_backends(source, backends, workdir, test=test, torch_top1=top1, device=device,
                               calibration_size=calibration_size, seed=seed, budget_s=latency_budget_s)
    return CompareRow(model=source.summary.model_name, run_dir=str(source.path),
                      params=sum(p.numel() for p in model.parameters()), macs=costs.total_macs,
                      test_top1=top1, macro_f1=f1, backends=figures, split=test_split(source))


def _backends(rows: Sequence[CompareRow]) -> list[str]:
    return list(rows[0].backends) if rows else []


def _columns(rows: Sequence[CompareRow]) -> list[str]:
    columns = ["model", "params", "macs", "test_top1", "macro_f1"]
    for backend in _backends(rows):
        columns += [f"test_top1_{backend}"] if backend != "torch" else []
        columns += [f"latency_p50_ms_b1_{backend}", f"images_per_s_b32_{backend}", f"size_bytes_{backend}",
                    f"pareto_{backend}"]
    return columns + ["split", "run_dir"]


def write_compare_csv(rows: Sequence[CompareRow], path: Path) -> None:
    """compare.csv: a row per run, the figures of every backend side by side."""
    fronts = {backend: front_of(rows, backend) for backend in _backends(rows)}
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_columns(rows))
        writer.writeheader()
        for index, row in enumerate(rows):
            values: dict[str, object] = {"model": row.model, "params": row.params, "macs": row.macs,
                                         "test_top1": round(row.test_top1, 6), "macro_f1": round(row.macro_f1, 6),
                                         "split": row.split, "run_dir": row.run_dir}
            for backend, figures in row.backends.items():
                if backend != "torch":
                    values[f"test_top1_{backend}"] = round(figures.test_top1, 6)
                values[f"latency_p50_ms_b1_{backend}"] = round(figures.latency.p50_ms_batch1, 4)
                values[f"images_per_s_b32_{backend}"] = round(figures.latency.images_per_s_batch32, 2)
                values[f"size_bytes_{backend}"] = figures.size_bytes
                values[f"pareto_{backend}"] = int(fronts[backend][index])
            writer.writerow(values)


def front_of(rows: Sequence[CompareRow], backend: str) -> list[bool]:
    """The accuracy-latency front of `rows` on one backend (its own top-1 and batch-1 latency)."""
    return pareto_front([r.backends[backend].test_top1 for r in rows],
                        [r.backends[backend].latency.p50_ms_batch1 for r in rows])


def row_labels(rows: Sequence[CompareRow]) -> list[str]:
    """Each row's name in the table and plot: its model, with its run folder's name when another
    row has the same model (e.g. a run and its pruned copy)."""
    counts = Counter(row.model for row in rows)
    return [row.model if counts[row.model] == 1 else f"{row.model} ({Path(row.run_dir).name})" for row in rows]


def format_compare(rows: Sequence[CompareRow]) -> str:
    """The table, a model starred when it is on the accuracy-latency front of any backend (which
    ones in the last column)."""
    backends = _backends(rows)
    fronts = {backend: front_of(rows, backend) for backend in backends}
    labels = row_labels(rows)
    width = max(18, *map(len, labels))
    header = f"  {'model':<{width}} {'params':>10} {'MACs':>12} {'macro-F1':>8}"
    for backend in backends:
        header += f" | {backend + ' top-1':>11} {'p50 b1 ms':>9} {'img/s b32':>9} {'MB':>7}"
    lines = [header + " | front"]
    for index, (row, label) in enumerate(zip(rows, labels)):
        on = [backend for backend in backends if fronts[backend][index]]
        line = f"{'*' if on else ' '} {label:<{width}} {row.params:>10,} {row.macs:>12,} {row.macro_f1:8.4f}"
        for backend in backends:
            figures = row.backends[backend]
            line += (f" | {100 * figures.test_top1:10.2f}% {figures.latency.p50_ms_batch1:9.2f} "
                     f"{figures.latency.images_per_s_batch32:9.1f} {figures.size_bytes / 1e6:7.2f}")
        lines.append(line + " | " + ",".join(on))
    lines.append("models marked * are on the accuracy-latency (batch 1) Pareto front of the backends named last; "
                 f"top-1 and macro-F1 on the {'/'.join(dict.fromkeys(row.split for row in rows))} split")
    return "\n".join(lines)


def plot_pareto(rows: Sequence[CompareRow], path: Path) -> None:
    """pareto.png: test top-1 against batch-1 latency, one colour per backend, each backend's
    front joined and its models filled, each model named beside its fastest point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 4.8))
    for backend, colour in zip(_backends(rows), ("tab:red", "tab:blue", "tab:green")):
        front = front_of(rows, backend)
        latency = [r.backends[backend].latency.p50_ms_batch1 for r in rows]
        accuracy = [100 * r.backends[backend].test_top1 for r in rows]
        for x, y, on in zip(latency, accuracy, front):
            axes.scatter([x], [y], s=60, color=colour if on else "white", edgecolors=colour)
        ordered = sorted((x, y) for x, y, on in zip(latency, accuracy, front) if on)
        axes.plot([p[0] for p in ordered], [p[1] for p in ordered], color=colour, linestyle="--",
                  label=f"{backend} front")
    for row, label in zip(rows, row_labels(rows)):  # each named once, at its fastest backend
        fastest = min(row.backends.values(), key=lambda figures: figures.latency.p50_ms_batch1)
        axes.annotate(label, (fastest.latency.p50_ms_batch1, 100 * fastest.test_top1), textcoords="offset points",
                      xytext=(-5, 6), ha="right", fontsize=8)
    axes.set_xlabel("latency p50, batch 1 (ms)")
    axes.set_ylabel("test top-1 (%)")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
