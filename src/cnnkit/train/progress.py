"""Progress for long loops: a rich bar on a terminal, else a plain line at least every 30 s.

A job whose stdout is a file or a pipe (CI, nohup, a notebook's subprocess) still shows that it
is alive, how fast it goes and when it will end.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

LINE_INTERVAL_S = 30.0


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class RateReporter:
    """`update(done)` as work completes; shows done/total, items/s and the ETA."""

    def __init__(self, total: int, *, label: str, unit: str = "images", stream: TextIO | None = None,
                 interval_s: float = LINE_INTERVAL_S, enabled: bool = True) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream or sys.stdout
        self.interval_s, self.enabled = interval_s, enabled
        self.start = self.last_line = time.perf_counter()
        self.done, self.bar, self.task = 0, None, None
        if enabled and self.stream.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total, rate="")

    def rate(self) -> float:
        return self.done / max(1e-9, time.perf_counter() - self.start)

    def line(self) -> str:
        rate = self.rate()
        eta = format_eta((self.total - self.done) / rate) if rate > 0 else "?"
        return f"{self.label}: {self.done}/{self.total} {self.unit}, {rate:.1f} {self.unit}/s, ETA {eta}"

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=done, rate=f"{self.rate():.1f} {self.unit}/s")
        elif time.perf_counter() - self.last_line >= self.interval_s:
            self.last_line = time.perf_counter()
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
