"""Capture a layer's output and the gradient of a score with respect to it, without leaks.

A forward hook on the layer stores a copy of its output (N, C, h, w) and registers a tensor hook
on that output (`output.register_hook`, as pytorch-grad-cam's ActivationsAndGradients does) that
records the gradient when the backward reaches it. In-place operations after the layer
(ReLU(inplace=True) in ResNet, DenseNet, MobileNet) are safe: the copy keeps the values the layer
produced, and a tensor hook registered before an in-place change receives the gradient with
respect to the tensor before the change (PyTorch's autograd mechanics notes, "Behavior of
Tensor hooks when Tensor is modified in-place").
The backward is asked only for the gradient at the layer's output edge, so nothing below the
layer is differentiated and no parameter's `.grad` is touched. Every hook is removed on exit,
even when the forward or the backward raises; no `requires_grad` flag is changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.autograd.graph import GradientEdge, get_gradient_edge
from torch.utils.hooks import RemovableHandle

from cnnkit.errors import CnnkitError


class NotAFeatureMap(CnnkitError):
    """The target layer's output is not a (N, C, h, w) tensor (a head, a flatten, a tuple)."""


@dataclass
class Capture:
    """The layer's output (N, C, h, w) of the last forward and, after `backward`, its gradient."""

    name: str
    activation: torch.Tensor | None = None
    gradient: torch.Tensor | None = None
    calls: int = 0
    edge: GradientEdge | None = None
    tensor_hooks: list[RemovableHandle] = field(default_factory=list)

    def output(self) -> torch.Tensor:
        """The captured activation; an error if the layer did not run, or ran more than once."""
        if self.activation is None:
            raise CnnkitError(f"target layer {self.name!r} did not run in the forward")
        if self.calls > 1:
            raise CnnkitError(
                f"target layer {self.name!r} ran {self.calls} times in one forward (a shared module, "
                "e.g. a reused ReLU): pick a layer that runs once"
            )
        return self.activation

    def backward(self, score: torch.Tensor) -> torch.Tensor:
        """Back-propagate the scalar `score` down to the layer's output only; the tensor hook
        records the gradient there. Zeros when the score does not depend on the layer."""
        activation = self.output()
        if self.edge is not None and score.requires_grad:
            torch.autograd.grad(score, inputs=[self.edge], allow_unused=True)
        return self.gradient if self.gradient is not None else torch.zeros_like(activation)

    def release(self) -> None:
        """Remove the tensor hooks and drop the autograd graph."""
        for handle in self.tensor_hooks:
            handle.remove()
        self.tensor_hooks.clear()
        self.edge = None  # drops the reference to the autograd graph


@contextlib.contextmanager
def capture_output(module: nn.Module, name: str, *, gradients: bool) -> Iterator[Capture]:
    """Record `module`'s output (and its gradient, module docstring) while the block runs; the
    forward hook and every tensor hook are removed on exit, also when the block raises.
    With `gradients`, the input of the forward must require grad (or the parameters before the
    layer), so that the layer's output is part of the autograd graph."""
    capture = Capture(name)

    def save_gradient(gradient: torch.Tensor) -> None:
        capture.gradient = gradient.detach()

    def hook(layer: nn.Module, inputs: object, output: object) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise NotAFeatureMap(f"target layer {name!r} outputs {shape}, not a (N, C, h, w) feature map")
        capture.calls += 1
        capture.activation = output.detach().clone()  # an in-place op after the layer must not change it
        if gradients and output.requires_grad:
            capture.edge = get_gradient_edge(output)
            capture.tensor_hooks.append(output.register_hook(save_gradient))

    handle = module.register_forward_hook(hook)
    try:
        yield capture
    finally:
        handle.remove()
        capture.release()
