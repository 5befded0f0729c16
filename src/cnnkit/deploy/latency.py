"""Inference speed measured the same way for every model and backend compared: warm-up, then the
median latency of single images and the throughput of batches of 32, all backends side by side."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.deploy.timing import time_side_by_side

# A batch (N, C, H, W) -> the callables to time on it, one per backend name.
RunsFor = Callable[[torch.Tensor], dict[str, Callable[[], object]]]


@dataclass(frozen=True)
class Latency:
    """p50 milliseconds per batch of 1, images per second at batch 32, and the threads used."""

    p50_ms_batch1: float
    images_per_s_batch32: float
    threads: int


def side_by_side_latency(runs_for: RunsFor, input_size: tuple[int, int, int], *, repeats: int = 50,
                         budget_s: float = 3.0, threads: int | None = None,
                         generator: torch.Generator | None = None) -> dict[str, Latency]:
    """Latency per backend of `runs_for(batch)` on random (1, *input_size) and (32, *input_size)
    inputs, the backends timed in rounds by `time_side_by_side` (one call of each per round)."""
    generator = generator or torch.Generator().manual_seed(0)
    single = torch.randn((1, *input_size), generator=generator)
    many = torch.randn((32, *input_size), generator=generator)
    one = time_side_by_side(runs_for(single), batch=1, warmup=3, repeats=repeats, max_seconds=budget_s)
    batch = time_side_by_side(runs_for(many), batch=32, warmup=1, repeats=max(3, repeats // 5), max_seconds=budget_s)
    threads = threads or torch.get_num_threads()
    return {name: Latency(1000.0 * one[name].p50, 32.0 / batch[name].p50, threads) for name in one}


def eager_runner(model: nn.Module, batch: torch.Tensor, device: torch.device | str) -> Callable[[], object]:
    """One eager forward of `model` (already eval, channels_last) on `batch` moved to `device` as
    channels_last; on CUDA it waits for the kernels, so that the time is the work's."""
    batch = batch.to(device).contiguous(memory_format=torch.channels_last)
    cuda = torch.device(device).type == "cuda"

    def run() -> object:
        with torch.inference_mode():
            output = model(batch)
        if cuda:
            torch.cuda.synchronize()
        return output

    return run


def torch_latency(model: nn.Module, input_size: tuple[int, int, int], *, device: torch.device | str = "cpu",
                  repeats: int = 50, budget_s: float = 3.0, generator: torch.Generator | None = None) -> Latency:
    """Torch eager latency of `model` on random channels_last (N, *input_size) inputs; the model is
    converted to channels_last in place (as `load_run` does: mixed formats would time conversions)
    and its train/eval mode restored."""
    was_training = model.training
    model = model.eval().to(memory_format=torch.channels_last)
    try:
        return side_by_side_latency(lambda x: {"torch": eager_runner(model, x, device)}, input_size,
                                    repeats=repeats, budget_s=budget_s, generator=generator)["torch"]
    finally:
        model.train(was_training)
