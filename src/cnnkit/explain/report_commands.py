"""`cnnkit interpret | calibrate | report`: error analysis, temperature scaling and the HTML report of a run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cnnkit.data.commands import positive_int
from cnnkit.errors import CnnkitError
from cnnkit.explain.activation_maps import CAM_METHODS
from cnnkit.explain.analysis_plots import plot_confusion, plot_gallery, plot_reliability, save_png
from cnnkit.explain.calibration import calibration_metrics, fit_temperature, reliability_bins
from cnnkit.explain.error_analysis import report_rows
from cnnkit.explain.interpret import Interpretation, interpret_split, split_logits
from cnnkit.explain.run_access import calibration_split, open_run, store_temperature
from cnnkit.explain.visuals import check_cam_choice, top_loss_tiles
from cnnkit.train.trainer import pick_device


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cnnkit interpret`, `cnnkit calibrate` and `cnnkit report` to the CLI."""
    interpret = subparsers.add_parser("interpret", help="error analysis of a run: confusion, per-class report, top losses")
    _common(interpret)
    interpret.add_argument("--split", default=None, help="split to analyse (default: test, else val, else the first)")
    interpret.add_argument("--out", required=True, help="directory for interpretation.json and the PNGs")
    interpret.add_argument("--top-losses", type=positive_int, default=16, help="how many top losses to show")
    _cam_arguments(interpret)
    interpret.set_defaults(func=run_interpret)

    calibrate = subparsers.add_parser("calibrate", help="fit a softmax temperature on the val split, store it in the run")
    _common(calibrate)
    calibrate.add_argument("--plot", default=None, help="write the reliability diagram (before/after) to this PNG")
    calibrate.set_defaults(func=run_calibrate)

    report = subparsers.add_parser("report", help="one self-contained HTML report of a run")
    _common(report)
    report.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    report.add_argument("--top-losses", type=positive_int, default=12, help="how many top losses to show")
    report.add_argument("--per-class", type=positive_int, default=4, help="Grad-CAM examples per class")
    _cam_arguments(report)
    report.set_defaults(func=run_report)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (from cnnkit train)")
    parser.add_argument("data", help="the run's dataset path or `wafer`")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _cam_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cam-method", choices=CAM_METHODS, default="gradcam",
                        help="class activation map of the galleries (default gradcam)")
    parser.add_argument("--cam-layer", default=None, help="its target layer (default: the model's last spatial stage)")


def format_interpretation(interpretation: Interpretation, *, max_pairs: int = 10) -> str:
    """The interpretation as text: accuracy, the classification report, the most confused pairs."""
    names = interpretation.class_names
    width = max(12, *(len(n) for n in names))
    lines = [f"split {interpretation.split}: accuracy {interpretation.report.accuracy:.4f}, "
             f"mean loss {interpretation.mean_loss:.4f}",
             f"{'':>{width}}  precision  recall      f1  support"]
    for name, s in report_rows(interpretation.report, names):
        lines.append(f"{name:>{width}}  {s.precision:9.4f} {s.recall:7.4f} {s.f1:7.4f} {s.support:8d}")
    if interpretation.confused:
        lines.append("most confused (true -> predicted: count):")
        lines += [f"  {names[p.true]} -> {names[p.predicted]}: {p.count}" for p in interpretation.confused[:max_pairs]]
    return "\n".join(lines)


def run_interpret(args: argparse.Namespace) -> int:
    """`cnnkit interpret`: one streaming pass, interpretation.json, confusion.png and top_losses.png."""
    device = pick_device(args.device)
    run = open_run(args.run, args.data, device=device)
    split = run.split_name(args.split)
    check_cam_choice(run, args.cam_method, args.cam_layer)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CnnkitError(f"--out {out} is a file: give a directory for interpretation.json and the PNGs")
    out.mkdir(parents=True, exist_ok=True)  # before the pass over the data, so a bad --out fails first
    interpretation, _, _ = interpret_split(run, split, top_k=args.top_losses, batch_size=args.batch_size,
                                           device=device)
    record = interpretation.to_dict()
    dataset = run.data.splits[split]
    for top in record["top_losses"]:  # the file, to look at or relabel (None for data held in memory)
        top["path"] = dataset.source(top["index"])
    (out / "interpretation.json").write_text(json.dumps(record, indent=2))
    save_png(plot_confusion(interpretation.confusion, interpretation.class_names), out / "confusion.png")
    images, captions = top_loss_tiles(run, interpretation, method=args.cam_method, layer=args.cam_layer)
    if images:
        save_png(plot_gallery(images, captions, columns=4, tile=3.0), out / "top_losses.png")
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(format_interpretation(interpretation))
        print(f"wrote {out}/interpretation.json, confusion.png" + (", top_losses.png" if images else ""))
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    """`cnnkit calibrate`: fit the temperature on the val split and store it in the run."""
    if args.plot and Path(args.plot).is_dir():
        raise CnnkitError(f"--plot {args.plot} is a directory: give the PNG file to write")
    device = pick_device(args.device)
    run = open_run(args.run, args.data, device=device)
    split, note = calibration_split(run)
    if note:
        print(f"calibrate: {note}", file=sys.stderr)
    logits, labels = split_logits(run, split, batch_size=args.batch_size, device=device)
    temperature = fit_temperature(logits, labels)
    scaled = {"before (T=1)": logits.softmax(dim=1), f"after (T={temperature:.3f})": (logits / temperature).softmax(dim=1)}
    before, after = (calibration_metrics(probabilities, labels) for probabilities in scaled.values())
    store_temperature(run.run_dir, temperature)
    if args.plot:
        save_png(plot_reliability({name: reliability_bins(p, labels) for name, p in scaled.items()}), args.plot)
    if args.json:
        print(json.dumps({"split": split, "temperature": temperature, "before": before, "after": after}, indent=2))
    else:
        print(f"temperature {temperature:.4f} fitted on the {split} split ({len(labels)} items), stored in "
              f"{run.run_dir / 'summary.json'}")
        for name in ("ece", "mce", "nll", "brier", "accuracy"):
            print(f"  {name:8} {before[name]:.4f} -> {after[name]:.4f}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """`cnnkit report`: compute the report of a run and write it as one HTML file."""
    from cnnkit.explain.report import build_report
    from cnnkit.explain.report_html import render_report

    out = Path(args.out)
    if out.is_dir():
        raise CnnkitError(f"--out {out} is a directory: give the HTML file to write, e.g. {out / 'report.html'}")
    out.parent.mkdir(parents=True, exist_ok=True)  # before the report is computed, so a bad --out fails first
    content = build_report(args.run, args.data, top_losses=args.top_losses, per_class=args.per_class,
                           cam_method=args.cam_method, cam_layer=args.cam_layer, batch_size=args.batch_size,
                           device=pick_device(args.device))
    out.write_text(render_report(content), encoding="utf-8")
    for note in content.notes:
        print(f"report: {note}", file=sys.stderr)
    print(json.dumps({"report": str(out)}) if args.json else f"wrote {out}")
    return 0
