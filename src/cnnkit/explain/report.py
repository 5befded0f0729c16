"""Everything the HTML report of a run shows, computed and drawn (PNG bytes); `report_html`
only lays it out. One streaming pass over the test split; the images of the top losses and of
the per-class gallery are re-read by index."""

from __future__ import annotations

import csv
import dataclasses
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnkit.errors import CnnkitError
from cnnkit.explain.analysis_plots import plot_confusion, plot_learning_curves, plot_reliability, png_bytes
from cnnkit.explain.calibration import calibration_metrics, fit_temperature, reliability_bins
from cnnkit.explain.filter_plots import plot_filters
from cnnkit.explain.filters import filter_grid
from cnnkit.explain.interpret import Interpretation, interpret_split, split_logits
from cnnkit.explain.layer_advice import LayerAdvice, advise_layer
from cnnkit.explain.run_access import RunWithData, calibration_split, open_run
from cnnkit.explain.visuals import cam_overlays, check_cam_choice, enlarge, top_loss_tiles
from cnnkit.train.config import load_config
from cnnkit.train.report import best_epoch_text, format_metric
from cnnkit.train.run_summary import RunSummary


@dataclass(frozen=True)
class Tile:
    """One picture of the report (PNG bytes) with its caption."""

    png: bytes
    caption: str


@dataclass(frozen=True)
class CalibrationSection:
    """Test-split calibration before (T = 1) and after temperature scaling; where T came from."""

    temperature: float
    source: str
    before: dict[str, float]
    after: dict[str, float]
    diagram: bytes


@dataclass(frozen=True)
class ReportContent:
    """Every section of the report of a run, computed and drawn; `report_html` lays it out."""

    title: str
    run_facts: list[tuple[str, str]]
    config: list[tuple[str, str]]
    data_facts: list[tuple[str, str]]
    learning_curves: bytes | None
    test_metrics: list[tuple[str, str]]
    interpretation: Interpretation
    confusion: bytes
    top_losses: list[Tile]
    class_gallery: list[tuple[str, list[Tile]]]
    cam_note: str
    cam_advice: str
    calibration: CalibrationSection | None
    filters: tuple[bytes, str] | None
    model_facts: list[tuple[str, str]]
    notes: list[str] = field(default_factory=list)


def image_png(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes, enlarged for small images."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(enlarge(image)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _metrics_rows(run_dir: Path, summary: RunSummary) -> list[dict[str, str]]:
    """metrics.csv's rows; for a fine-tuning, its phases' (RUN/phase<i>-<trainable>/metrics.csv)
    one after another, epochs counted across the phases."""
    if not summary.phases:
        return _read_metrics(run_dir / "metrics.csv")
    rows: list[dict[str, str]] = []
    for index, phase in enumerate(summary.phases, start=1):
        offset = len(rows)
        rows += [{**row, "epoch": str(offset + int(row["epoch"]))}
                 for row in _read_metrics(run_dir / f"phase{index}-{phase['trainable']}" / "metrics.csv")]
    return rows


def _read_metrics(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _run_facts(run: RunWithData) -> list[tuple[str, str]]:
    summary = run.summary
    facts = [("model", summary.model_name), ("classes", ", ".join(run.class_names)),
             ("input size (C, H, W)", " x ".join(map(str, summary.default_cfg.input_size))),
             ("epochs run", str(summary.epochs_run))]
    if summary.best_epoch is not None and summary.best_metric is not None:
        facts.append(("best epoch", f"{best_epoch_text(summary).removeprefix('epoch ')} "
                                    f"({summary.monitor} {format_metric(summary.monitor, summary.best_metric)})"))
    if summary.train_seconds:
        facts.append(("training time", f"{summary.train_seconds:.1f} s"))
    return facts


def _config_rows(run_dir: Path) -> list[tuple[str, str]]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return []
    return [(name, str(value)) for name, value in dataclasses.asdict(load_config(path)).items()]


def _data_facts(run: RunWithData) -> list[tuple[str, str]]:
    source = run.data.source
    facts = [("dataset", f"{source.location} ({source.format})"), ("classes", str(len(run.class_names)))]
    facts += [(f"{name} split", f"{len(dataset)} images") for name, dataset in run.data.splits.items()]
    return facts


def _class_gallery(run: RunWithData, interpretation: Interpretation, *, method: str,
                   layer: str | None) -> list[tuple[str, list[Tile]]]:
    """Per class, its most confidently recognised items with the map of that class."""
    indices = [i for per_class in interpretation.examples for i in per_class]
    if not indices:
        return []
    views, inputs, labels = run.items(interpretation.split, indices)
    pictures = cam_overlays(run.model, views, inputs, labels, method=method, target_layer=layer)
    tiles = iter(Tile(image_png(picture), f"#{index}") for picture, index in zip(pictures, indices))
    return [(name, [next(tiles) for _ in per_class])
            for name, per_class in zip(interpretation.class_names, interpretation.examples) if per_class]


def _calibration(run: RunWithData, logits: torch.Tensor, labels: torch.Tensor, *, shown_on: str, batch_size: int,
                 device: torch.device, notes: list[str]) -> CalibrationSection | None:
    """Calibration of `logits` (the `shown_on` split) before and after the run's stored
    temperature, else one fitted now on the calibration split (`calibration_split`)."""
    split, note = calibration_split(run)
    if split == shown_on:
        notes.append(f"the temperature is fitted on the {split} split the calibration is shown on: the 'after' "
                     "figures are in-sample and flatter it")
    stored = run.predictor.temperature
    if stored is not None:
        temperature, source = float(stored), "stored in the run by `cnnkit calibrate`"
    else:
        if note:
            notes.append(note)
        fit_logits, fit_labels = split_logits(run, split, batch_size=batch_size, device=device)
        try:
            temperature = fit_temperature(fit_logits, fit_labels)
        except CnnkitError as error:
            notes.append(f"calibration skipped: on the {split} split, {error}")
            return None
        source = f"fitted now on the {split} split (not stored: run `cnnkit calibrate` to store it)"
    before, after = logits.softmax(dim=1), (logits / temperature).softmax(dim=1)
    diagram = plot_reliability({"before (T=1)": reliability_bins(before, labels),
                                f"after (T={temperature:.3f})": reliability_bins(after, labels)})
    return CalibrationSection(temperature, source, calibration_metrics(before, labels),
                              calibration_metrics(after, labels), png_bytes(diagram))


def _first_layer_filters(run: RunWithData) -> tuple[bytes, str]:
    """The first convolution's filters as PNG bytes, and that layer's name."""
    grid = filter_grid(run.model)
    with tempfile.TemporaryDirectory(prefix="cnnkit-report-") as folder:
        return plot_filters(grid, Path(folder) / "filters.png").read_bytes(), grid.layer


def _cam_advice(run: RunWithData, method: str, layer: str | None, device: torch.device) -> str:
    """Which map to trust at the run's input size (`layer_advice`), and whether this report's
    maps follow it; if not, the flags that do."""
    example = torch.zeros((1, *run.summary.default_cfg.input_size), device=device)
    advice: LayerAdvice = advise_layer(run.model, example)
    if (method, layer or advice.default_layer) == (advice.method, advice.layer):
        return f"{advice.text()} The maps in this report are {advice.method} at {advice.layer}."
    return (f"{advice.text()} The maps in this report are {method} at {layer or advice.default_layer}; "
            f"for {advice.method} at {advice.layer}: cnnkit report RUN DATA --cam-method {advice.method} "
            f"--cam-layer {advice.layer}.")


def _model_facts(run: RunWithData) -> list[tuple[str, str]]:
    from cnnkit.analysis.summary import summary

    analysed = summary(run.model, tuple(run.model.default_cfg.input_size))
    return [("parameters", f"{analysed.total_params:,}"), ("trainable parameters", f"{analysed.trainable_params:,}"),
            ("MACs per image", f"{analysed.total_macs:,} ({analysed.total_macs / 1e6:.2f} M)"),
            ("leaf layers", str(sum(row.leaf for row in analysed.rows)))]


def build_report(run_dir: str | Path, data_path: str, *, top_losses: int = 12, per_class: int = 4,
                 cam_method: str = "gradcam", cam_layer: str | None = None, batch_size: int = 64,
                 device: torch.device = torch.device("cpu")) -> ReportContent:
    """Compute and draw every section of the report of RUN on its data's test split."""
    run = open_run(run_dir, data_path, device=device)
    check_cam_choice(run, cam_method, cam_layer)
    notes: list[str] = []
    split = run.split_name(None)
    if split != "test":
        notes.append(f"{run.data.source.location} has no test split with items: this report is on the {split} split")
    interpretation, logits, labels = interpret_split(run, split, top_k=top_losses, examples_per_class=per_class,
                                                     batch_size=batch_size, device=device, keep_logits=True)
    images, captions = top_loss_tiles(run, interpretation, method=cam_method, layer=cam_layer)
    rows = _metrics_rows(run.run_dir, run.summary)
    report = interpretation.report
    test_metrics = [(name, format_metric(name, value)) for name, value in (run.summary.test or {}).items()]
    test_metrics += [(f"{split} accuracy (recomputed)", f"{report.accuracy:.4f}"),
                     (f"{split} macro F1", f"{report.macro.f1:.4f}"), (f"{split} weighted F1", f"{report.weighted.f1:.4f}")]
    return ReportContent(
        title=f"{run.summary.model_name} run {run.run_dir.name}",
        run_facts=_run_facts(run), config=_config_rows(run.run_dir), data_facts=_data_facts(run),
        learning_curves=png_bytes(plot_learning_curves(rows)) if rows else None,
        test_metrics=test_metrics, interpretation=interpretation,
        confusion=png_bytes(plot_confusion(interpretation.confusion, interpretation.class_names)),
        top_losses=[Tile(image_png(image), caption) for image, caption in zip(images, captions)],
        class_gallery=_class_gallery(run, interpretation, method=cam_method, layer=cam_layer),
        cam_note=f"{cam_method} ({f'layer {cam_layer}' if cam_layer else 'last spatial stage'})",
        cam_advice=_cam_advice(run, cam_method, cam_layer, device),
        calibration=_calibration(run, logits, labels, shown_on=split, batch_size=batch_size, device=device,
                                 notes=notes),
        filters=_first_layer_filters(run), model_facts=_model_facts(run), notes=notes,
    )
