"""Inference speed of a torch model, measured the same way for every model compared: warm-up, then
the median latency of single images and the throughput of batches of 32 (eval mode, channels_last)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.deploy.timing import time_side_by_side


@dataclass(frozen=True)
class Latency:
    """p50 milliseconds per batch of 1, images per second at batch 32, and the threads used."""

    p50_ms_batch1: float
    images_per_s_batch32: float
    threads: int


@torch.inference_mode()
def torch_latency(model: nn.Module, input_size: tuple[int, int, int], *, device: torch.device | str = "cpu",
                  repeats: int = 50, budget_s: float = 3.0, generator: torch.Generator | None = None) -> Latency:
    """Torch eager latency of `model` on random channels_last (N, *input_size) inputs; the model is
    converted to channels_last in place (as `load_run` does: mixed formats would time conversions)
    and its train/eval mode restored."""
    was_training = model.training
    model = model.eval().to(memory_format=torch.channels_last)
    generator = generator or torch.Generator().manual_seed(0)
    try:
        single = torch.randn((1, *input_size), generator=generator).to(device).contiguous(
            memory_format=torch.channels_last)
        many = torch.randn((32, *input_size), generator=generator).to(device).contiguous(
            memory_format=torch.channels_last)
        one = time_side_by_side({"torch": lambda: model(single)}, batch=1, warmup=3, repeats=repeats,
                                max_seconds=budget_s)["torch"].p50
        batch = time_side_by_side({"torch": lambda: model(many)}, batch=32, warmup=1, repeats=max(3, repeats // 5),
                                  max_seconds=budget_s)["torch"].p50
    finally:
        model.train(was_training)
    return Latency(1000.0 * one, 32.0 / batch, torch.get_num_threads())
