"""`cnnkit export RUN`: the run's model to a checked .onnx, and optionally a checked INT8 model with
its accuracy, agreement, size and speed against fp32 measured side by side."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnkit.deploy.bench import onnx_runner
from cnnkit.deploy.from_run import SourceRun
from cnnkit.deploy.int8_budget import Int8Result, logits_of, quantize_within_budget
from cnnkit.deploy.onnx_check import OnnxCheck
from cnnkit.deploy.onnx_export import write_checked_onnx
from cnnkit.deploy.quantize import Int8Quantizer, QuantizeMethod
from cnnkit.deploy.run_images import split_batches, test_split
from cnnkit.deploy.timing import Timing, time_side_by_side
from cnnkit.device_info import device_info
from cnnkit.inference import RunSummary, read_summary, update_summary


@dataclass(frozen=True)
class Int8Report:
    """What `cnnkit export --int8` prints: the budgeted result, file sizes and the side-by-side timings."""

    result: Int8Result
    fp32_bytes: int
    int8_bytes: int | None
    speed: dict[tuple[str, int], Timing]  # (backend, batch) -> timing
    method: str

    def int8_faster(self, batch: int) -> bool:
        key_fp32, key_int8 = ("fp32", batch), ("int8", batch)
        return key_int8 in self.speed and self.speed[key_int8].p50 < self.speed[key_fp32].p50


def export_checked(model: nn.Module, summary: RunSummary, out: Path, *, opset: int | None,
                   dynamic_batch: bool, real: torch.Tensor | None) -> OnnxCheck:
    """Write a run's model (and its summary's class names, model name and fitted temperature) to
    `out` and check it on random and `real` inputs at batch 1 and 7."""
    return write_checked_onnx(model, out, dynamic_batch=dynamic_batch, opset=opset, class_names=summary.class_names,
                              model_name=summary.model_name, real_inputs=real, temperature=summary.temperature)


def export_int8(source: SourceRun, fp32_path: Path, *, method: QuantizeMethod, calibration_size: int,
                max_drop: float, threads: int | None, seed: int, repeats: int = 20,
                log: Callable[[str], None] = print) -> Int8Report:
    """Calibrate on `calibration_size` training images, quantize within `max_drop` top-1 points on
    the test split, and time fp32 and int8 side by side at batch 1 and 32."""
    calibration = split_batches(source, "train", limit=calibration_size, seed=seed)
    test = split_batches(source, test_split(source), seed=seed)
    int8_path = fp32_path.with_name(fp32_path.stem + ".int8.onnx")
    quantizer = Int8Quantizer(fp32_path, calibration.batches, method=method)
    try:
        result = quantize_within_budget(
            quantizer, int8_path, labels=test.labels, max_drop=max_drop, probe=calibration.batches[:2],
            evaluate=lambda path: logits_of(path, test.batches, threads=threads).argmax(axis=1),
            threads=threads, log=log)
    finally:
        quantizer.close()
    speed = {}
    generator = torch.Generator().manual_seed(seed)
    shape = tuple(source.model.default_cfg.input_size)
    for batch in (1, 32):
        inputs = torch.randn((batch, *shape), generator=generator)
        runs = {"fp32": onnx_runner(fp32_path, inputs, threads=threads)}
        if result.path is not None:
            runs["int8"] = onnx_runner(result.path, inputs, threads=threads)
        for name, timing in time_side_by_side(runs, batch=batch, repeats=repeats, max_seconds=10).items():
            speed[(name, batch)] = timing
    int8_bytes = result.path.stat().st_size if result.path is not None else None
    return Int8Report(result, fp32_path.stat().st_size, int8_bytes, speed, method)


def format_int8_report(report: Int8Report) -> str:
    """The printed report: machine and ISA, top-1 and agreement, sizes, latencies, and a plain verdict
    when int8 is not faster here or no mix met the budget."""
    r = report.result
    info = device_info()
    lines = [f"machine: {info.describe()}",
             f"int8 ({report.method} calibration, QDQ, per-channel int8 weights, uint8 activations)"]
    lines.append(f"  top-1 fp32 {100 * r.fp32_top1:.2f}%  int8 {100 * r.int8_top1:.2f}%  drop {r.drop:.2f} points  "
                 f"agreement {100 * r.agreement:.2f}%")
    if r.kept_float:
        lines.append(f"  kept in float (most sensitive first): {', '.join(r.kept_float)}")
    size = f"  size fp32 {report.fp32_bytes / 1e6:.2f} MB"
    lines.append(size + (f"  int8 {report.int8_bytes / 1e6:.2f} MB" if report.int8_bytes is not None else ""))
    for batch in (1, 32):
        fp32 = report.speed[("fp32", batch)]
        text = f"  batch {batch:>2}: fp32 p50 {1e3 * fp32.p50:.2f} ms"
        int8 = report.speed.get(("int8", batch))
        if int8 is not None:
            text += f"  int8 p50 {1e3 * int8.p50:.2f} ms  speed-up {fp32.p50 / int8.p50:.2f}x"
        lines.append(text)
    if r.path is None:
        lines.append("no mix of int8 and float layers met the accuracy budget: keeping the fp32 export only")
    elif not report.int8_faster(32):
        isa = "VNNI" if info.vnni else "no VNNI (AVX2-class int8 only)"
        lines.append(f"int8 is NOT faster than fp32 on this machine ({isa}): use the fp32 model here")
    return "\n".join(lines)


def record_export(run_dir: Path, fp32_path: Path, check: OnnxCheck, report: Int8Report | None) -> RunSummary:
    """Record this export in the run's summary: `exports["onnx"]` (and `"onnx-int8"` when an int8
    model met the budget), the export check's max difference, and the int8 figures."""
    summary = read_summary(run_dir)
    exports = {**summary.exports, "onnx": str(fp32_path.resolve())}
    checks = {**summary.export_checks, "onnx": check.max_abs_diff}
    int8 = summary.int8
    if report is not None:
        r = report.result
        exports.pop("onnx-int8", None)
        if r.path is not None:
            exports["onnx-int8"] = str(r.path.resolve())
        int8 = {"method": report.method, "fp32_top1": r.fp32_top1, "int8_top1": r.int8_top1,
                "agreement": r.agreement, "kept_float": list(r.kept_float), "cpu": device_info().describe()}
    return update_summary(run_dir, exports=exports, export_checks=checks, int8=int8)
