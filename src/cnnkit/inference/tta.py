"""Test-time augmentation: the model sees each image as it is and in a few more views (flips, quarter
turns), and the logits of all views are averaged, as ttach's default `mean` merge does.

Averaging logits (not probabilities) keeps one meaning of "logits" for every backend: the
Predictor's temperature, softmax and top-k, and `cnnkit eval`'s loss, apply to the average as to a
single view. `TTABackend` wraps any backend (torch, ONNX Runtime), so both get it alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cnnkit.errors import CnnkitError
from cnnkit.inference.backends import Backend

# Each view of a (N, C, H, W) batch; the quarter turns need square inputs (H == W).
VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "rot90": lambda x: x.rot90(1, dims=(-2, -1)),
    "rot180": lambda x: x.rot90(2, dims=(-2, -1)),
    "rot270": lambda x: x.rot90(3, dims=(-2, -1)),
}
QUARTER_TURNS = ("rot90", "rot270")


@dataclass(frozen=True)
class TTA:
    """The extra views to average with the image itself, by name (`VIEWS`), e.g. ("hflip",)."""

    views: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.views, tuple) or not all(isinstance(v, str) for v in self.views):
            raise CnnkitError(f"tta: views must be a tuple of view names ({', '.join(VIEWS)}), got {self.views!r}")
        if not self.views:
            raise CnnkitError(f"tta: name at least one view ({', '.join(VIEWS)})")
        unknown = [v for v in self.views if v not in VIEWS]
        if unknown:
            raise CnnkitError(f"tta: unknown view {unknown[0]!r}; the views are {', '.join(VIEWS)}")
        if len(set(self.views)) != len(self.views):
            raise CnnkitError(f"tta: a view is named twice in {','.join(self.views)}")

    @classmethod
    def parse(cls, text: str) -> TTA:
        """"hflip,vflip" -> TTA(("hflip", "vflip")) (the `--tta` flag's form)."""
        return cls(tuple(part.strip() for part in text.split(",") if part.strip()))

    def check_input(self, height: int, width: int) -> None:
        """Quarter turns swap H and W: refused for a model whose input is not square."""
        turns = [v for v in self.views if v in QUARTER_TURNS]
        if turns and height != width:
            raise CnnkitError(f"tta: {turns[0]} needs a square input; this model takes {height}x{width}")

    def describe(self) -> str:
        return ",".join(self.views)


class TTABackend:
    """`inner`'s logits (and features) averaged over the image and the views of `tta`: one forward
    pass of the inner backend per view, each at the caller's batch size."""

    def __init__(self, inner: Backend, tta: TTA) -> None:
        self.inner = inner
        self.tta = tta
        self.name = f"{inner.name}+tta({tta.describe()})"
        self.device = inner.device

    def _mean(self, run: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        self.tta.check_input(*batch.shape[-2:])
        total = run(batch).float()
        for view in self.tta.views:
            total = total + run(VIEWS[view](batch).contiguous()).float()
        return total / (1 + len(self.tta.views))

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self._mean(self.inner.logits, batch)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return self._mean(self.inner.features, batch)
