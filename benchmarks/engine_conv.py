"""Benchmark: the NumPy engine's conv2d forward+backward against torch's F.conv2d + autograd (float32).

Both libraries get the same number of threads: torch.set_num_threads is set to the number of
threads NumPy's BLAS uses (from threadpoolctl when installed; otherwise asked of the OpenBLAS
library NumPy loaded; failing that, the cores this process may run on, OpenBLAS's default). The
engine's depthwise path runs one thread per core of its own (NumPy's elementwise loops are
serial). The engine, torch and a square NumPy float32 GEMM are timed in turn, round by round, so
that on a shared machine each round sees the same load: the ratio engine / torch and the engine's
throughput as a fraction of NumPy's own GEMM throughput are medians of the per-round figures.
Depthwise is measured at 28x28 spatial size.

Run: .venv/bin/python benchmarks/engine_conv.py [--threads N]   (last line: `engine_conv: <ratio>x
torch`, the dense 3x3 forward+backward time of the engine divided by torch's). On a crowded machine
`--threads 1` is the steadier comparison: two BLAS threads that wait on each other suffer most.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cnnkit.device_info import device_info
from cnnkit.engine.conv import conv2d, conv2d_backward

REPETITIONS = 7
GEMM_SIZE = 2048


@dataclass(frozen=True)
class ConvCase:
    """One benchmarked convolution: input (N, C, H, W), weight (C_out, C_in/groups, kH, kW)."""

    name: str
    x_shape: tuple[int, int, int, int]
    w_shape: tuple[int, int, int, int]
    stride: int
    padding: int
    groups: int

    def flops(self, out_hw: tuple[int, int]) -> float:
        """Multiply-adds x2 of the forward pass; backward (dx and dw) costs twice that again."""
        n = self.x_shape[0]
        c_out, c_per_group, kh, kw = self.w_shape
        return 2.0 * n * c_out * out_hw[0] * out_hw[1] * c_per_group * kh * kw


CASES = (
    ConvCase("dense 3x3, 64->64, 56x56", (32, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1),
    ConvCase("dense 3x3 stride 2", (32, 64, 56, 56), (64, 64, 3, 3), 2, 1, 1),
    ConvCase("1x1, 64->256, 56x56", (32, 64, 56, 56), (256, 64, 1, 1), 1, 0, 1),
    ConvCase("depthwise 3x3, 256 ch, 28x28", (32, 256, 28, 28), (256, 1, 3, 3), 1, 1, 256),
)


@dataclass(frozen=True)
class CaseResult:
    """Median fwd+bwd seconds of the engine and of torch on one case, the engine's GFLOP/s, and the
    medians of the per-round ratios engine / torch and engine GFLOP/s / NumPy GEMM GFLOP/s."""

    case: ConvCase
    engine_s: float
    torch_s: float
    engine_gflops: float
    ratio: float
    gemm_fraction: float


def blas_threads() -> int:
    """Threads NumPy's BLAS uses: threadpoolctl if installed, else OpenBLAS's own getter, else the cores."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threads = _openblas_threads()
        if threads:
            return threads
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    blas = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
    return blas[0] if blas else os.cpu_count() or 1


def _openblas_threads() -> int:
    """Ask the OpenBLAS library NumPy has loaded (found in /proc/self/maps) for its thread count; 0 if unknown."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return 0
    libraries = {line.split()[-1] for line in maps.read_text().splitlines() if "openblas" in line.lower()}
    for library in sorted(libraries):
        handle = ctypes.CDLL(library)
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            getter = getattr(handle, symbol, None)
            if getter is not None:
                return int(getter())
    return 0


def median_seconds(run: Callable[[], object], repetitions: int = REPETITIONS) -> float:
    """Median wall time of `run` after one warm-up call."""
    run()
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_seconds(
    runs: dict[str, Callable[[], object]], repetitions: int = REPETITIONS
) -> dict[str, list[float]]:
    """Wall times of each run, taken in turn round by round (after one warm-up round).

    On a shared machine the load drifts within seconds; timing the contenders side by side in
    every round lets the per-round ratios cancel most of that drift.
    """
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repetitions):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def square_gemm(rng: np.random.Generator) -> Callable[[], object]:
    """A large square NumPy float32 matmul: this machine's reference GEMM speed (2 * GEMM_SIZE^3 flops)."""
    a = rng.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    b = rng.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    return lambda: a @ b


def numpy_gemm_gflops(rng: np.random.Generator) -> float:
    """This machine's NumPy float32 GEMM throughput on a large square matmul."""
    return 2.0 * GEMM_SIZE**3 / median_seconds(square_gemm(rng)) / 1e9


def measure_case(case: ConvCase, rng: np.random.Generator) -> CaseResult:
    """Forward+backward time of the engine and of torch on the same data, and a square GEMM, in turn."""
    x = rng.standard_normal(case.x_shape, dtype=np.float32)
    w = (rng.standard_normal(case.w_shape, dtype=np.float32) * 0.1).astype(np.float32)
    conv_args = (case.stride, case.padding, 1, case.groups)
    y = conv2d(x, w, None, *conv_args)
    dy = rng.standard_normal(y.shape, dtype=np.float32)

    def engine_step() -> None:
        conv2d(x, w, None, *conv_args)
        conv2d_backward(dy, x, w, *conv_args)

    x_t = torch.tensor(x, requires_grad=True)
    w_t = torch.tensor(w, requires_grad=True)
    dy_t = torch.tensor(dy)

    def torch_step() -> None:
        x_t.grad = w_t.grad = None
        F.conv2d(x_t, w_t, None, *conv_args).backward(dy_t)

    times = interleaved_seconds({"engine": engine_step, "torch": torch_step, "gemm": square_gemm(rng)})
    flops = 3.0 * case.flops(y.shape[2:])
    engine_s = statistics.median(times["engine"])
    ratio = statistics.median(e / t for e, t in zip(times["engine"], times["torch"]))
    # Engine GFLOP/s over GEMM GFLOP/s, round by round: (flops / engine_s) / (gemm_flops / gemm_s).
    fraction = statistics.median(flops * g / (2.0 * GEMM_SIZE**3 * e) for e, g in zip(times["engine"], times["gemm"]))
    return CaseResult(case, engine_s, statistics.median(times["torch"]), flops / engine_s / 1e9, ratio, fraction)


def run_benchmark(seed: int = 0, threads: int | None = None) -> tuple[int, float, list[CaseResult]]:
    """(threads, NumPy GEMM GFLOP/s, one result per case); `threads` limits NumPy's BLAS and torch."""
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
    threads = blas_threads()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    gemm = numpy_gemm_gflops(rng)
    return threads, gemm, [measure_case(case, rng) for case in CASES]


def report(threads: int, gemm_gflops: float, results: list[CaseResult]) -> str:
    """The results table, ending with the headline line."""
    lines = [
        device_info().describe(),
        f"load average (1, 5, 15 min) at the end: {', '.join(f'{load:.2f}' for load in os.getloadavg())}",
        f"threads: {threads} (NumPy BLAS and torch); NumPy float32 GEMM {GEMM_SIZE}^3: {gemm_gflops:.1f} GFLOP/s",
        f"{'case (N=32, float32, fwd+bwd)':<32} {'engine ms':>10} {'torch ms':>10} {'ratio':>7} "
        f"{'GFLOP/s':>8} {'of GEMM':>8}",
    ]
    for r in results:
        lines.append(
            f"{r.case.name:<32} {r.engine_s * 1e3:>10.1f} {r.torch_s * 1e3:>10.1f} {r.ratio:>6.2f}x "
            f"{r.engine_gflops:>8.1f} {r.gemm_fraction:>8.0%}"
        )
    lines.append(f"engine_conv: {results[0].ratio:.2f}x torch")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="BLAS and torch threads (default: NumPy's BLAS default)"
    )
    print(report(*run_benchmark(threads=parser.parse_args().threads)))
