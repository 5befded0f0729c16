"""Latency percentiles of any callable on one batch (torch, ONNX Runtime fp32 or int8): warm-up
first, then timed repeats. (`latency.torch_latency` is the two-figure summary used by `compare`.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Seconds per batch (p50/p90/p99 over `repeats` timed calls) and the batch size."""

    batch: int
    p50: float
    p90: float
    p99: float
    repeats: int

    @property
    def images_per_s(self) -> float:
        return self.batch / self.p50


def time_calls(run: Callable[[], object], *, batch: int, warmup: int = 3, repeats: int = 20,
              max_seconds: float | None = None) -> Timing:
    """Time `run()` `repeats` times after `warmup` untimed calls; `max_seconds` stops the timed
    calls early (at least 3) so that a slow model does not hold a benchmark for minutes."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats:
        begin = time.perf_counter()
        run()
        times.append(time.perf_counter() - begin)
        if max_seconds is not None and len(times) >= 3 and time.perf_counter() - start > max_seconds:
            break
    p50, p90, p99 = np.percentile(np.array(times), [50, 90, 99])
    return Timing(batch, float(p50), float(p90), float(p99), len(times))
