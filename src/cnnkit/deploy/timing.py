"""Latency percentiles of callables on one batch (torch, ONNX Runtime fp32 or int8), timed side by
side after a warm-up. (`latency.side_by_side_latency`, the two-figure summary used by `compare`,
is built on it.)"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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


def time_side_by_side(runs: Mapping[str, Callable[[], object]], *, batch: int, warmup: int = 2,
                      repeats: int = 10, max_seconds: float | None = None) -> dict[str, Timing]:
    """Time several callables in rounds, one call of each per round, so that a load change on a
    shared machine hits all of them alike (ratios of their p50s are then fair)."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    start = time.perf_counter()
    for done in range(repeats):
        for name, run in runs.items():
            begin = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - begin)
        if max_seconds is not None and done >= 2 and time.perf_counter() - start > max_seconds:
            break
    result = {}
    for name, values in times.items():
        p50, p90, p99 = np.percentile(np.array(values), [50, 90, 99])
        result[name] = Timing(batch, float(p50), float(p90), float(p99), len(values))
    return result
