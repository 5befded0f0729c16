"""Where the forward pass runs: a small seam so the Predictor serves torch and ONNX Runtime alike.

A backend takes a preprocessed float batch (N, C, H, W) and returns logits (N, K); the torch
backend also gives the pre-logits features (N, D). Temperature, softmax and top-k stay in the
Predictor, so every backend gets them for free.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from cnnkit.errors import CnnkitError


@runtime_checkable
class Backend(Protocol):
    """What the Predictor needs from an engine that runs the model."""

    name: str
    device: torch.device

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float, normalised -> (N, K) logits on the CPU or the backend's device."""
        ...

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, D) pre-logits vectors; a CnnkitError where the backend has none."""
        ...


class TorchBackend:
    """An nn.Module in eval mode, channels_last, under `torch.inference_mode`."""

    name = "torch"

    def __init__(self, model: nn.Module, *, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else _first_device(model)
        # channels_last: 1.1-1.8x faster inference on CPU for the zoo (benchmarks/zoo_speed.py).
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)

    def _ready(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(self._ready(batch)).float()

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        if not hasattr(self.model, "forward_head"):
            raise CnnkitError(f"{type(self.model).__name__} has no forward_head: no pre-logits features")
        with torch.inference_mode():
            feature_map = self.model.forward_features(self._ready(batch))
            return self.model.forward_head(feature_map, pre_logits=True).float()


def _first_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
