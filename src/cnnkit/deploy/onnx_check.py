"""ONNX Runtime against PyTorch on the same inputs: every export is checked before it is reported done."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.inference.onnx_backend import OnnxBackend

# The tolerance, element by element as numpy.allclose applies it: no per-sample scale, no
# loosening. Every zoo model meets it (tests/deploy, the slow ones included) when its BatchNorm
# statistics are those of varied, image-like inputs, as a trained model's are. Statistics taken from
# white noise are not: a deep net sees all noise images alike, BatchNorm divides a mean-dominated
# activation by a tiny spread, and float32 rounding (summation order differs between the two
# runtimes) is amplified: inception_v3 at 96 px then reaches 1.1x the allowance on a logit of 0.07.
# The registry test therefore settles BatchNorm on image-like inputs (`zoo_inputs.small_input`)
# rather than this check widening its tolerance; inception_v3, the tightest model measured, then
# uses 0.4x of the allowance on white-noise inputs and 0.1x on image-like ones.
RTOL, ATOL = 1e-3, 1e-4


@dataclass(frozen=True)
class CheckRow:
    """One comparison: which inputs, batch size, largest |onnx - torch| and the largest logit."""

    inputs: str
    batch: int
    max_abs_diff: float
    max_abs_logit: float


@dataclass(frozen=True)
class OnnxCheck:
    """All comparisons of one export; `describe()` is the line `cnnkit export` prints."""

    rows: tuple[CheckRow, ...]

    @property
    def max_abs_diff(self) -> float:
        return max(row.max_abs_diff for row in self.rows)

    def describe(self) -> str:
        parts = [f"{r.inputs} batch {r.batch}: max |diff| {r.max_abs_diff:.2e}" for r in self.rows]
        return "; ".join(parts) + f" (tolerance rtol {RTOL:g} / atol {ATOL:g})"


def _batch_of(inputs: torch.Tensor, size: int) -> torch.Tensor:
    repeats = -(-size // inputs.shape[0])
    return inputs.repeat(repeats, 1, 1, 1)[:size]


def allowed_difference(expected: torch.Tensor) -> torch.Tensor:
    """atol + rtol·|logit| per element, numpy.allclose's rule (|onnx - torch| <= atol + rtol·|torch|)."""
    return ATOL + RTOL * expected.abs()


def _largest_mismatch(actual: torch.Tensor, expected: torch.Tensor) -> tuple[int, ...] | None:
    """(sample, class) of the element furthest beyond its allowed difference, None when all are within."""
    excess = (actual - expected).abs() - allowed_difference(expected)
    worst = int(excess.argmax())
    if float(excess.flatten()[worst]) <= 0:
        return None
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), excess.shape))


def verify_onnx(path: str | Path, model: nn.Module, *, real_inputs: torch.Tensor | None = None,
                batch_sizes: Sequence[int] = (1, 7), seed: int = 0) -> OnnxCheck:
    """Run `path` with ONNX Runtime and `model` (eval mode, float32) with PyTorch on random
    inputs (from `seed`) and on `real_inputs` (N, C, H, W) (repeated to fill a batch), at each of
    `batch_sizes`; an element beyond atol 1e-4 + rtol 1e-3·|torch logit| (numpy.allclose's rule)
    is an error naming the sample, class, both values and the largest difference."""
    backend = OnnxBackend(path)
    shape = tuple(backend.input_shape[1:])
    generator = torch.Generator().manual_seed(seed)
    sources = {"random": torch.randn((max(batch_sizes), *shape), generator=generator)}
    if real_inputs is not None:
        if tuple(real_inputs.shape[1:]) != shape:
            raise CnnkitError(f"verify_onnx: real inputs have shape {tuple(real_inputs.shape[1:])}, "
                              f"{Path(path).name} takes {shape}")
        sources["real"] = real_inputs.float()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows = []
    try:
        for kind, inputs in sources.items():
            for size in batch_sizes:
                batch = _batch_of(inputs, size)
                with torch.inference_mode():
                    expected = model(batch.to(device)).float().cpu()
                actual = backend.logits(batch)
                index = _largest_mismatch(actual, expected)
                if index is not None:
                    sample, label = index
                    raise CnnkitError(
                        f"{Path(path).name}: ONNX Runtime disagrees with PyTorch on {kind} inputs at batch {size}: "
                        f"sample {sample}, class {label}: onnx {float(actual[index]):.7g} vs torch "
                        f"{float(expected[index]):.7g} (|diff| {float((actual - expected).abs()[index]):.3g} > "
                        f"atol {ATOL:g} + rtol {RTOL:g}·|torch|); max |diff| {float((actual - expected).abs().max()):.3g}")
                rows.append(CheckRow(kind, size, float((actual - expected).abs().max()), float(expected.abs().max())))
    finally:
        model.train(was_training)
    return OnnxCheck(tuple(rows))
