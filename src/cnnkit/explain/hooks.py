"""Capture a layer's output (and the gradient of a score with respect to it) without leaks.

A forward hook swaps the layer's output for a copy of a detached leaf: the gradient of the score
is then taken with respect to that leaf (backward stops there, nothing below the layer is
differentiated), and in-place operations after the layer (ReLU(inplace=True) in ResNet, DenseNet,
MobileNet) modify the copy, never the captured activation. The hook is removed on exit, even when
the forward raises; no parameter's `requires_grad` or `.grad` is touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.errors import CnnkitError


@dataclass
class Capture:
    """The layer's output (N, C, h, w) of the last forward; a leaf requiring grad when asked."""

    name: str
    activation: torch.Tensor | None = None
    calls: int = 0

    def output(self) -> torch.Tensor:
        if self.activation is None:
            raise CnnkitError(f"target layer {self.name!r} did not run in the forward")
        if self.calls > 1:
            raise CnnkitError(
                f"target layer {self.name!r} ran {self.calls} times in one forward (a shared module, "
                "e.g. a reused ReLU): pick a layer that runs once"
            )
        return self.activation


@contextlib.contextmanager
def capture_output(module: nn.Module, name: str, *, gradients: bool) -> Iterator[Capture]:
    """Record `module`'s output while the block runs (module docstring); the hook is always removed."""
    capture = Capture(name)

    def hook(layer: nn.Module, inputs: object, output: object) -> torch.Tensor | None:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise CnnkitError(f"target layer {name!r} outputs {shape}, not a (N, C, h, w) feature map")
        capture.calls += 1
        if not gradients:
            capture.activation = output.detach().clone()
            return None
        capture.activation = output.detach().requires_grad_(True)
        return capture.activation.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield capture
    finally:
        handle.remove()
