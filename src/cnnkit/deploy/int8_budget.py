"""Accuracy-aware INT8: when quantizing everything costs more than `max_drop` top-1 points, keep
the most sensitive layers in float until the drop fits, or say that no mix does.

Sensitivity of a layer = how much of the int8 model's logit error (MSE against fp32 on a few
images) disappears when only that layer stays in float (leave-one-out, as NNCF's and Intel
Neural Compressor's accuracy-aware loops rank layers). First conv, classifier and depthwise
convs usually come out on top.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnkit.deploy.quantize import Int8Quantizer
from cnnkit.inference.onnx_backend import OnnxBackend

Evaluate = Callable[[Path], np.ndarray]  # model path -> predicted class per test image


@dataclass(frozen=True)
class Int8Result:
    """The outcome: `path` is None when no mix met the budget (keep fp32)."""

    path: Path | None
    fp32_top1: float
    int8_top1: float  # of the returned model, or of the best mix tried when none fits
    agreement: float  # fraction of test images where int8 and fp32 predict the same class
    kept_float: tuple[str, ...]
    sensitivity: tuple[tuple[str, float], ...] = field(default=())

    @property
    def drop(self) -> float:
        return 100.0 * (self.fp32_top1 - self.int8_top1)


def logits_of(path: Path | OnnxBackend, batches: Sequence[np.ndarray], *, threads: int | None = None) -> np.ndarray:
    """ONNX Runtime logits (N, K) of the .onnx at `path` (or of an open session, `threads` then
    unused) over all `batches` (N_i, C, H, W), in order."""
    backend = path if isinstance(path, OnnxBackend) else OnnxBackend(path, threads=threads)
    return np.concatenate([backend.logits(torch.from_numpy(b)).numpy() for b in batches])


def layer_sensitivity(quantizer: Int8Quantizer, probe: Sequence[np.ndarray], *,
                      threads: int | None = None) -> list[tuple[str, float]]:
    """(node, sensitivity) for every quantizable node, most sensitive first: the fraction of the
    all-int8 logit MSE against fp32 removed by keeping that node alone in float (the trial models
    live in the quantizer's private folder)."""
    workdir = quantizer.workdir
    reference = logits_of(quantizer.prepared, probe, threads=threads)
    full = quantizer.quantize(workdir / "probe-all.onnx")
    base = float(np.mean((logits_of(full, probe, threads=threads) - reference) ** 2))
    scores = []
    for index, node in enumerate(quantizer.quantizable_nodes()):
        candidate = quantizer.quantize(workdir / f"probe-{index}.onnx", keep_float=[node])
        error = float(np.mean((logits_of(candidate, probe, threads=threads) - reference) ** 2))
        scores.append((node, (base - error) / base if base > 0 else 0.0))
        candidate.unlink()
    return sorted(scores, key=lambda item: -item[1])


def fewest_that_fit(fits: Callable[[int], bool], available: int) -> int | None:
    """The smallest count in 1..available-1 for which `fits(count)` holds, trying 1, 2, 4, 8...
    (available-1 last) and then bisecting between the last count that failed and the first that
    fitted (3 layers kept in float when 3 suffice, not 4); None when none of those fits. Assumes that
    more layers in float is never worse; where that fails, the count returned still fits."""
    failed, count = 0, 1
    while count < available:
        if fits(count):
            fitted = count
            while fitted - failed > 1:
                middle = (failed + fitted) // 2
                if fits(middle):
                    fitted = middle
                else:
                    failed = middle
            return fitted
        failed, count = count, (min(2 * count, available - 1) if count < available - 1 else available)
    return None


def quantize_within_budget(quantizer: Int8Quantizer, out: Path, *, labels: np.ndarray, evaluate: Evaluate,
                           max_drop: float, probe: Sequence[np.ndarray], threads: int | None = None,
                           log: Callable[[str], None] = print) -> Int8Result:
    """Quantize everything; if top-1 drops more than `max_drop` points, rank layers by sensitivity
    and keep the fewest most sensitive ones in float that bring the drop within budget
    (`fewest_that_fit`). Writes `out` only on success."""
    fp32_predictions = evaluate(quantizer.fp32_path)
    fp32_top1 = float(np.mean(fp32_predictions == labels))

    def attempt(keep: Sequence[str]) -> tuple[Path, float, float]:
        path = quantizer.quantize(out, keep_float=keep)
        predictions = evaluate(path)
        return path, float(np.mean(predictions == labels)), float(np.mean(predictions == fp32_predictions))

    path, top1, agreement = attempt(())
    if 100.0 * (fp32_top1 - top1) <= max_drop:
        return Int8Result(path, fp32_top1, top1, agreement, ())
    log(f"int8: top-1 {100 * top1:.2f}% vs fp32 {100 * fp32_top1:.2f}% (drop "
        f"{100 * (fp32_top1 - top1):.2f} > {max_drop:g} points): measuring per-layer sensitivity")
    ranking = layer_sensitivity(quantizer, probe, threads=threads)
    tried: dict[int, tuple[float, float]] = {0: (top1, agreement)}  # layers in float -> (top-1, agreement)

    def fits(count: int) -> bool:
        _, top1, agreement = attempt([name for name, _ in ranking[:count]])
        tried[count] = (top1, agreement)
        log(f"int8: {count} layer(s) in float: top-1 {100 * top1:.2f}%")
        return 100.0 * (fp32_top1 - top1) <= max_drop

    count = fewest_that_fit(fits, len(ranking))
    if count is None:
        out.unlink(missing_ok=True)
        best = max(tried, key=lambda c: tried[c][0])  # the best mix tried, reported beside the refusal
        return Int8Result(None, fp32_top1, *tried[best], tuple(name for name, _ in ranking[:best]), tuple(ranking))
    keep = tuple(name for name, _ in ranking[:count])
    if list(tried)[-1] != count:  # `out` holds the last mix tried, which did not fit: write the chosen one
        quantizer.quantize(out, keep_float=keep)
    return Int8Result(out, fp32_top1, *tried[count], keep, tuple(ranking))
