"""Dynamic batching: requests wait in a queue and run through the model together.

A worker task takes the first waiting sample, then gathers more until `max_batch_size` or until
that first sample has waited `max_delay_ms` since it was queued (whichever comes first), as
Triton's dynamic batcher (its max queue delay) and Ray Serve's `@serve.batch` do: samples that
queued up during the previous forward pass have waited long enough and leave at once. The forward pass runs in one inference thread, never on the event loop;
each request's future gets its own row of logits, so order is preserved by construction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch


class QueueFullError(Exception):
    """The queue holds `max_queue` samples already: the caller answers 503 with Retry-After."""


@dataclass
class _Item:
    sample: torch.Tensor
    future: asyncio.Future[torch.Tensor]
    queued_at: float = field(default_factory=time.perf_counter)


# Called with (batch size, queue seconds of each sample) after each batch: the metrics hook.
BatchObserver = Callable[[int, list[float]], None]


class DynamicBatcher:
    """`await batcher.submit(sample)` -> that sample's logits (K,), computed in a shared batch.

    `forward` maps uint8 samples (N, C, H, W) to logits (N, K); it runs in `executor` (one thread,
    so the model never runs twice at once).
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], *, executor: ThreadPoolExecutor,
                 max_batch_size: int, max_delay_ms: float, max_queue: int,
                 observe: BatchObserver | None = None) -> None:
        self.forward = forward
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_ms / 1000.0
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max_queue)
        self.observe = observe
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cnnkit-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if not item.future.done():
                item.future.cancel()

    def submit(self, sample: torch.Tensor) -> asyncio.Future[torch.Tensor]:
        """Queue one uint8 sample (C, H, W); QueueFullError when the queue is full."""
        future: asyncio.Future[torch.Tensor] = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Item(sample, future))
        except asyncio.QueueFull:
            raise QueueFullError(f"{self.queue.maxsize} samples already waiting") from None
        return future

    async def _gather(self) -> list[_Item]:
        """The next batch: the first live item, then more until full or the first has waited the delay."""
        items = [await self._next_live()]
        deadline = items[0].queued_at + self.max_delay_s
        while len(items) < self.max_batch_size:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if not item.future.done():  # a request that timed out or went away is dropped
                items.append(item)
        return items

    async def _next_live(self) -> _Item:
        while True:
            item = await self.queue.get()
            if not item.future.done():
                return item

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._gather()
            started = time.perf_counter()
            if self.observe is not None:
                self.observe(len(items), [started - item.queued_at for item in items])
            try:
                samples = torch.stack([item.sample for item in items])
                logits = await loop.run_in_executor(self.executor, self.forward, samples)
                if len(logits) != len(items):
                    raise RuntimeError(f"the model answered {len(logits)} rows for a batch of {len(items)}")
            except Exception as error:  # the model failed: every waiting request hears why, the loop goes on
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            for row, item in enumerate(items):
                if not item.future.done():
                    item.future.set_result(logits[row])
