"""torch's deterministic-algorithms switch for the length of a run (it is process-global)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.utils.deterministic


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """torch's deterministic-algorithms switch is process-global: set it for the run only.

    Without its NaN-filling of every new uninitialised tensor: that fill only guards ops that read
    memory they never wrote, costs a memory pass per activation (2-3% of mnist_cnn's CPU
    step), and PyTorch's docs (torch.utils.deterministic) say a valid program stays deterministic
    without it.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    previous_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = previous_fill
